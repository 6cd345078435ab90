-- Message parts: every delivery the stream emits lands here; FINAL (or a merge) folds the parts of
-- one message into one row. SimpleAggregateFunction columns make the fold safe against replays,
-- duplicates and a stream that forgot half of a message:
--   anyLast over Nullable send fields skips NULLs, so a receipt-only part never erases sent_at;
--   max over the (outcome_at, rank, …) tuple keeps the newest outcome (delivered=2 beats failed=1);
--   groupUniqArrayArray over receipt ids counts each distinct receipt once.
CREATE DATABASE IF NOT EXISTS sms;

CREATE TABLE IF NOT EXISTS sms.message_parts
(
    provider LowCardinality(String),
    message_id String,
    phone_hash String,
    phone_masked SimpleAggregateFunction(anyLast, String),
    phone_raw SimpleAggregateFunction(anyLast, Nullable(String)),
    carrier SimpleAggregateFunction(anyLast, LowCardinality(String)),
    country_code SimpleAggregateFunction(anyLast, LowCardinality(String)),
    template SimpleAggregateFunction(anyLast, Nullable(String)),
    sign SimpleAggregateFunction(anyLast, Nullable(String)),
    segments SimpleAggregateFunction(anyLast, Nullable(UInt8)),
    out_id SimpleAggregateFunction(anyLast, Nullable(String)),
    sent_at SimpleAggregateFunction(anyLast, Nullable(DateTime64(3, 'UTC'))),
    receipt_sent_at SimpleAggregateFunction(anyLast, Nullable(DateTime64(3, 'UTC'))),
    outcome SimpleAggregateFunction(max, Tuple(
        at DateTime64(3, 'UTC'), rank UInt8, stage String, error_code String, error_message String,
        failure_category String)),
    receipt_ids SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    first_seen_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    updated_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (provider, message_id, phone_hash)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per (provider, message_id, phone) when read with or without FINAL.
-- The inner query materializes every column with identity(): ClickHouse 26.x reads subcolumns
-- (outcome.rank, receipt_ids.size0, template.null) of a FINAL table from the unmerged parts, which
-- gave a merged row the outcome of its oldest part (tests/test_warehouse.py guards this).
CREATE VIEW IF NOT EXISTS sms.messages AS
SELECT
    provider,
    message_id,
    phone_hash,
    CAST(p_masked AS String) AS phone_masked,
    CAST(p_carrier AS LowCardinality(String)) AS carrier,
    CAST(p_country AS String) AS country_code,
    CAST(ifNull(p_template, '') AS String) AS template,
    CAST(ifNull(p_sign, '') AS String) AS sign,
    CAST(ifNull(p_segments, 1) AS UInt8) AS segments,
    CAST(coalesce(p_sent_at, p_receipt_sent_at) AS Nullable(DateTime64(3, 'UTC'))) AS sent_at,
    CAST(if(tupleElement(o, 'stage') = 'receipt', tupleElement(o, 'at'), NULL) AS Nullable(DateTime64(3, 'UTC'))) AS reported_at,
    CAST(multiIf(tupleElement(o, 'rank') = 2, 'delivered', tupleElement(o, 'rank') = 1, 'failed', 'pending')
         AS Enum8('pending' = 0, 'delivered' = 1, 'failed' = 2, 'expired' = 3)) AS status,
    CAST(tupleElement(o, 'error_code') AS String) AS error_code,
    CAST(tupleElement(o, 'error_message') AS String) AS error_message,
    CAST(if(tupleElement(o, 'rank') = 0, '', tupleElement(o, 'failure_category')) AS LowCardinality(String)) AS failure_category,
    CAST(tupleElement(o, 'stage') AS LowCardinality(String)) AS outcome_stage,
    CAST(if(reported_at IS NULL OR sent_at IS NULL, NULL,
            toUInt32(greatest(0, dateDiff('millisecond', assumeNotNull(sent_at), assumeNotNull(reported_at)))))
         AS Nullable(UInt32)) AS latency_ms,
    CAST(length(rids) AS UInt16) AS receipt_count,
    CAST(ifNull(p_out_id, '') AS String) AS out_id,
    CAST(p_first_seen AS DateTime64(3, 'UTC')) AS first_seen_at,
    CAST(p_updated AS DateTime64(3, 'UTC')) AS updated_at
FROM
(
    SELECT
        provider, message_id, phone_hash,
        identity(phone_masked) AS p_masked, identity(carrier) AS p_carrier, identity(country_code) AS p_country,
        identity(template) AS p_template, identity(sign) AS p_sign, identity(segments) AS p_segments,
        identity(out_id) AS p_out_id, identity(sent_at) AS p_sent_at, identity(receipt_sent_at) AS p_receipt_sent_at,
        identity(outcome) AS o, identity(receipt_ids) AS rids,
        identity(first_seen_at) AS p_first_seen, identity(updated_at) AS p_updated
    FROM sms.message_parts FINAL
);

CREATE TABLE IF NOT EXISTS sms.replies
(
    provider LowCardinality(String),
    reply_id String,
    phone_hash String,
    phone_masked String,
    carrier LowCardinality(String),
    country_code LowCardinality(String),
    content String,
    sign String,
    dest_code String,
    replied_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(received_at)
ORDER BY (provider, reply_id)
SETTINGS non_replicated_deduplication_window = 10000;
