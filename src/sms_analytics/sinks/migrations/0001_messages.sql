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
    receipt_segments SimpleAggregateFunction(anyLast, Nullable(UInt8)),
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
