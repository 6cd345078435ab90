-- Province and city of a message (issue 17): from the number's segment (model/region.py), set where
-- the raw number is known (sources/base/fields.py), carried by the events and the deliveries.
-- Parts written before this migration have '' (unknown), like a number the data cannot place.
-- max, not anyLast: a message has one province, and parts that do not know it (a conversion's,
-- migrations/0013, and its resolver) write '', which max never prefers to a name, whatever the
-- order FINAL or a merge folds the parts in.
-- Re-runnable: ADD COLUMN IF NOT EXISTS, and the materialized views of 0008 dropped (IF EXISTS) and
-- created again with the two columns (a view's query cannot gain a column in place). Migrations run
-- at start, before the sink inserts, so no delivery passes while a view is missing.
ALTER TABLE sms.message_parts ADD COLUMN IF NOT EXISTS province SimpleAggregateFunction(max, LowCardinality(String));
ALTER TABLE sms.message_parts ADD COLUMN IF NOT EXISTS city SimpleAggregateFunction(max, LowCardinality(String));
ALTER TABLE sms.delivery_ingest ADD COLUMN IF NOT EXISTS province String DEFAULT '';
ALTER TABLE sms.delivery_ingest ADD COLUMN IF NOT EXISTS city String DEFAULT '';
ALTER TABLE sms.delivery_ingest_raw ADD COLUMN IF NOT EXISTS province String DEFAULT '';
ALTER TABLE sms.delivery_ingest_raw ADD COLUMN IF NOT EXISTS city String DEFAULT '';

DROP VIEW IF EXISTS sms.delivery_ingest_mv;

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
    fromUnixTimestamp64Milli(updated_at_ms, 'UTC') AS updated_at,
    province, city
FROM sms.delivery_ingest;

DROP VIEW IF EXISTS sms.delivery_ingest_raw_mv;

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
    fromUnixTimestamp64Milli(updated_at_ms, 'UTC') AS updated_at,
    province, city
FROM sms.delivery_ingest_raw;
