-- What the dashboard panels read instead of sms.messages (which merges every message on every read).
-- These tables are written by the same per-minute recompute as sms.rollup_minute_raw
-- (sinks/rollups.py), with the recompute's `generation`, and read through views in views.sql that
-- keep the newest generation of each minute or bucket (per minute, a sentinel row, messages = 0 or
-- provider '', marks a recompute even of an emptied minute; per bucket of sms.rollup_level_raw, a row
-- of sms.rollup_level_generations).
--
-- Failed messages per minute sent and error code: "Top error codes" and "Unmapped error codes".
-- seen = coalesce(reported_at, sent_at, first_seen_at), as sms.unmapped_codes defines it.
CREATE TABLE IF NOT EXISTS sms.rollup_error_minute_raw
(
    minute DateTime('UTC'),
    provider LowCardinality(String),
    carrier LowCardinality(String),
    template String,
    sign String,
    country_code LowCardinality(String),
    failure_category LowCardinality(String),
    error_code String,
    outcome_stage LowCardinality(String),
    messages UInt64,
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    example_message String,
    generation DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(generation)
ORDER BY (minute, provider, carrier, template, sign, country_code, failure_category, error_code, outcome_stage);

-- The messages of each minute sent that were not delivered (failed, or pending when recomputed): "Failed
-- numbers with reasons" reads the newest of a time range from here instead of merging every message.
-- The view sms.undelivered_messages turns a pending message past SMS_EXPIRE_AFTER into expired when read,
-- as sms.messages does.
CREATE TABLE IF NOT EXISTS sms.undelivered_messages_raw
(
    minute DateTime('UTC'),
    provider LowCardinality(String),
    message_id String,
    phone_hash String,
    phone_masked String,
    carrier LowCardinality(String),
    country_code LowCardinality(String),
    template String,
    sign String,
    sent_at DateTime64(3, 'UTC'),
    status Enum8('pending' = 0, 'delivered' = 1, 'failed' = 2, 'expired' = 3),
    error_code String,
    error_message String,
    failure_category LowCardinality(String),
    outcome_stage LowCardinality(String),
    generation DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(generation)
ORDER BY (minute, provider, message_id, phone_hash);

-- Coarser levels of sms.rollup_minute_raw (the same measures, summed over failure categories), so
-- that panels over long ranges read few rows and merge few latency sketches (a quantilesDD state
-- costs microseconds to read and merge; 7 days of minute rows hold 1.7M):
--   grain 'full': every dimension, level 3600 (an hour) and 86400 (a day, UTC);
--   grain 'provider_carrier': template, sign and country_code '' (all of them), level 60, 300, 600
--   and 3600, for panels whose template, sign and country variables are All.
-- `bucket` is the level's start. Sums and merged sketches of any level equal those of the minute
-- rows they cover (a sketch's bin counts add up), so a panel may combine levels. latency_quantiles:
-- the row's own sketch finalized ([p50, p90, p95, p99]), for a panel point that is one row. Small
-- granules: a panel reads a few buckets of each level, and a FINAL read takes whole granules.
CREATE TABLE IF NOT EXISTS sms.rollup_level_raw
(
    grain LowCardinality(String),
    level UInt32,
    bucket DateTime('UTC'),
    provider LowCardinality(String),
    carrier LowCardinality(String),
    template String,
    sign String,
    country_code LowCardinality(String),
    sent UInt64,
    delivered UInt64,
    failed UInt64,
    expired UInt64,
    pending UInt64,
    segments UInt64,
    final_within_1m UInt64,
    final_within_5m UInt64,
    final_within_30m UInt64,
    delivered_within Array(UInt64),
    latency_state AggregateFunction(quantilesDD(0.005, 0.5, 0.9, 0.95, 0.99), UInt32),
    latency_sum_ms UInt64,
    latency_quantiles Array(Float64),
    generation DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(generation)
ORDER BY (grain, level, bucket, provider, carrier, template, sign, country_code)
SETTINGS index_granularity = 256;

-- The generation of every recompute of a (grain, level, bucket), written after its rows: the view
-- sms.rollup_level keeps the rows of each bucket's newest generation, looked up in this small table.
CREATE TABLE IF NOT EXISTS sms.rollup_level_generations
(
    grain LowCardinality(String),
    level UInt32,
    bucket DateTime('UTC'),
    generation DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(generation)
ORDER BY (grain, level, bucket);

-- "Message lookup" (and a number's history): bloom filters per granule find the few granules that hold a
-- masked number or a number's hash, so only those are read and merged.
ALTER TABLE sms.message_parts ADD INDEX IF NOT EXISTS phone_masked_bloom phone_masked TYPE bloom_filter(0.001) GRANULARITY 1;
ALTER TABLE sms.message_parts ADD INDEX IF NOT EXISTS phone_hash_bloom phone_hash TYPE bloom_filter(0.001) GRANULARITY 1;
ALTER TABLE sms.message_parts MATERIALIZE INDEX phone_masked_bloom;
ALTER TABLE sms.message_parts MATERIALIZE INDEX phone_hash_bloom;
