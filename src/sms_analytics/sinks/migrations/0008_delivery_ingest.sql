-- Deliveries go into sms.message_parts as the stream wrote them: the sink hands the records' JSON
-- (arrays of Delivery, model/events.py) to ClickHouse in one JSONEachRow insert, and this
-- materialized view turns each delivery into a message part, the same mapping as
-- sinks/rows.py:message_row. No per-row Python work: parsing runs in ClickHouse.
-- Two entry tables: sms.delivery_ingest drops the raw number whatever the record carries;
-- sms.delivery_ingest_raw keeps it (SMS_STORE_RAW_PHONE=true).
CREATE TABLE IF NOT EXISTS sms.delivery_ingest
(
    provider String, message_id String, phone String DEFAULT '', phone_hash String, phone_masked String,
    carrier String, country_code String, has_send Bool DEFAULT false,
    template Nullable(String), sign Nullable(String), segments Nullable(UInt8), receipt_segments Nullable(UInt8),
    out_id Nullable(String), sent_at_ms Nullable(Int64), receipt_sent_at_ms Nullable(Int64),
    status String DEFAULT 'pending', stage String DEFAULT '', outcome_at_ms Int64 DEFAULT 0,
    error_code String DEFAULT '', error_message String DEFAULT '', failure_category String DEFAULT '',
    receipt_ids Array(String) DEFAULT [], updated_at_ms Int64 DEFAULT 0
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS sms.delivery_ingest_raw AS sms.delivery_ingest ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS sms.delivery_ingest_mv TO sms.message_parts AS
SELECT
    provider, message_id, phone_hash, phone_masked, CAST(NULL, 'Nullable(String)') AS phone_raw,
    carrier, country_code,
    if(has_send, template, NULL) AS template, if(has_send, sign, NULL) AS sign,
    if(has_send, segments, NULL) AS segments, receipt_segments, if(has_send, out_id, NULL) AS out_id,
    fromUnixTimestamp64Milli(sent_at_ms, 'UTC') AS sent_at,
    fromUnixTimestamp64Milli(receipt_sent_at_ms, 'UTC') AS receipt_sent_at,
    tuple(fromUnixTimestamp64Milli(if(status = 'pending', 0, outcome_at_ms), 'UTC'),
          toUInt8(multiIf(status = 'delivered', 2, status = 'failed', 1, 0)), stage, error_code, error_message,
          failure_category) AS outcome,
    receipt_ids,
    fromUnixTimestamp64Milli(updated_at_ms, 'UTC') AS first_seen_at,
    fromUnixTimestamp64Milli(updated_at_ms, 'UTC') AS updated_at
FROM sms.delivery_ingest;

CREATE MATERIALIZED VIEW IF NOT EXISTS sms.delivery_ingest_raw_mv TO sms.message_parts AS
SELECT
    provider, message_id, phone_hash, phone_masked, CAST(nullIf(phone, ''), 'Nullable(String)') AS phone_raw,
    carrier, country_code,
    if(has_send, template, NULL) AS template, if(has_send, sign, NULL) AS sign,
    if(has_send, segments, NULL) AS segments, receipt_segments, if(has_send, out_id, NULL) AS out_id,
    fromUnixTimestamp64Milli(sent_at_ms, 'UTC') AS sent_at,
    fromUnixTimestamp64Milli(receipt_sent_at_ms, 'UTC') AS receipt_sent_at,
    tuple(fromUnixTimestamp64Milli(if(status = 'pending', 0, outcome_at_ms), 'UTC'),
          toUInt8(multiIf(status = 'delivered', 2, status = 'failed', 1, 0)), stage, error_code, error_message,
          failure_category) AS outcome,
    receipt_ids,
    fromUnixTimestamp64Milli(updated_at_ms, 'UTC') AS first_seen_at,
    fromUnixTimestamp64Milli(updated_at_ms, 'UTC') AS updated_at
FROM sms.delivery_ingest_raw;
