-- Conversions (issue 16): the business reports that a message did its job (an OTP entered, a link
-- followed) through POST /v1/conversions; topic sms.conversions.v1; the sink writes each report here.
-- A ground truth beyond delivery receipts: a converted message was delivered, whatever its receipt says.
--
-- sms.conversions: every report as received (the number as its keyed hash and mask only). A repeated
-- report has the same conversion_id and folds (ReplacingMergeTree); ORDER BY starts with the message
-- key, so on a cluster (sinks/cluster.py) it is sharded like sms.message_parts and its materialized
-- view writes to the shard of its message. written_at: when ClickHouse stored it, what the rollup
-- round's watermark reads (sinks/rollups.py, `Rollups.conversions`).
CREATE TABLE IF NOT EXISTS sms.conversions
(
    provider LowCardinality(String),
    message_id String,
    phone_hash String,
    conversion_id String,
    phone_masked String,
    carrier LowCardinality(String),
    country_code LowCardinality(String),
    template String,
    sent_from Nullable(DateTime64(3, 'UTC')),
    sent_to Nullable(DateTime64(3, 'UTC')),
    converted_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(received_at)
ORDER BY (provider, message_id, phone_hash, conversion_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- The message's conversion: the earliest reported (min folds duplicates and either order of
-- conversion and send/receipt; a part without it is NULL, which min skips).
ALTER TABLE sms.message_parts ADD COLUMN IF NOT EXISTS converted_at SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC')));

-- A conversion that names its message by provider + message_id + number is a part of that message at once.
-- The other forms (number + template + sent window; message_id without number) are resolved by the
-- rollup round (sinks/rollups.py RESOLVE), which inserts the same kind of part.
CREATE MATERIALIZED VIEW IF NOT EXISTS sms.conversions_mv TO sms.message_parts AS
SELECT
    provider, message_id, phone_hash, phone_masked, carrier, country_code,
    toNullable(converted_at) AS converted_at,
    received_at AS first_seen_at, received_at AS updated_at
FROM sms.conversions
WHERE message_id != '' AND phone_hash != '';

-- The rollups count conversions (after latency_sum_ms, where the recompute's positional INSERTs put them):
-- converted (messages with a conversion), delivered_unconverted (delivered by their receipt, no conversion)
-- and conversion_ms_sum (sum of converted_at - sent_at over the converted).
ALTER TABLE sms.rollup_minute_raw ADD COLUMN IF NOT EXISTS converted UInt64 DEFAULT 0 AFTER latency_sum_ms;
ALTER TABLE sms.rollup_minute_raw ADD COLUMN IF NOT EXISTS delivered_unconverted UInt64 DEFAULT 0 AFTER converted;
ALTER TABLE sms.rollup_minute_raw ADD COLUMN IF NOT EXISTS conversion_ms_sum UInt64 DEFAULT 0 AFTER delivered_unconverted;
ALTER TABLE sms.rollup_level_raw ADD COLUMN IF NOT EXISTS converted UInt64 DEFAULT 0 AFTER latency_sum_ms;
ALTER TABLE sms.rollup_level_raw ADD COLUMN IF NOT EXISTS delivered_unconverted UInt64 DEFAULT 0 AFTER converted;
ALTER TABLE sms.rollup_level_raw ADD COLUMN IF NOT EXISTS conversion_ms_sum UInt64 DEFAULT 0 AFTER delivered_unconverted;
