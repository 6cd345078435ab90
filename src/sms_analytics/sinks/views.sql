-- Views, re-created at every start (they hold no data), so settings such as SMS_EXPIRE_AFTER
-- apply without a migration. {expire_after_seconds} is filled in from the settings.
--
-- Message states: pending -> delivered | failed | expired. `expired`: no final receipt within
-- SMS_EXPIRE_AFTER of sent_at (a receipt that arrives later still ends the message delivered or
-- failed). A receipt whose code means expiry (EXPIRED) is `failed` with category `expired`.
-- Segments: a message of N parts is one message with segments = N (the receipt's sms_size where
-- the provider reports it, else the send's billed parts); it counts once, as delivered when its
-- receipt says delivered.
-- One row per (provider, message_id, phone) when read with or without FINAL.
-- The inner query materializes every column with identity(): ClickHouse 26.x reads subcolumns
-- (outcome.rank, receipt_ids.size0, template.null) of a FINAL table from the unmerged parts, which
-- gave a merged row the outcome of its oldest part (tests/test_warehouse.py guards this).
CREATE OR REPLACE VIEW sms.messages AS
SELECT
    provider,
    message_id,
    phone_hash,
    CAST(p_masked AS String) AS phone_masked,
    CAST(p_carrier AS LowCardinality(String)) AS carrier,
    CAST(p_country AS String) AS country_code,
    CAST(p_province AS LowCardinality(String)) AS province,
    CAST(p_city AS LowCardinality(String)) AS city,
    CAST(ifNull(p_template, '') AS String) AS template,
    CAST(ifNull(p_sign, '') AS String) AS sign,
    CAST(coalesce(p_receipt_segments, p_segments, 1) AS UInt8) AS segments,
    CAST(coalesce(p_sent_at, p_receipt_sent_at) AS Nullable(DateTime64(3, 'UTC'))) AS sent_at,
    CAST(if(tupleElement(o, 'stage') = 'receipt', tupleElement(o, 'at'), NULL) AS Nullable(DateTime64(3, 'UTC'))) AS reported_at,
    CAST(multiIf(tupleElement(o, 'rank') = 2, 'delivered', tupleElement(o, 'rank') = 1, 'failed',
                 sent_at < now64(3) - toIntervalSecond({expire_after_seconds}), 'expired', 'pending')
         AS Enum8('pending' = 0, 'delivered' = 1, 'failed' = 2, 'expired' = 3)) AS status,
    CAST(tupleElement(o, 'error_code') AS String) AS error_code,
    CAST(tupleElement(o, 'error_message') AS String) AS error_message,
    CAST(multiIf(status = 'expired', 'expired', tupleElement(o, 'rank') = 0, '', tupleElement(o, 'failure_category'))
         AS LowCardinality(String)) AS failure_category,
    CAST(tupleElement(o, 'stage') AS LowCardinality(String)) AS outcome_stage,
    CAST(if(reported_at IS NULL OR sent_at IS NULL, NULL,
            toUInt32(greatest(0, dateDiff('millisecond', assumeNotNull(sent_at), assumeNotNull(reported_at)))))
         AS Nullable(UInt32)) AS latency_ms,
    CAST(length(rids) AS UInt16) AS receipt_count,
    CAST(ifNull(p_out_id, '') AS String) AS out_id,
    CAST(p_first_seen AS DateTime64(3, 'UTC')) AS first_seen_at,
    CAST(p_updated AS DateTime64(3, 'UTC')) AS updated_at,
    -- The earliest conversion reported for the message (migrations/0013), and its time from the send.
    CAST(p_converted AS Nullable(DateTime64(3, 'UTC'))) AS converted_at,
    CAST(if(converted_at IS NULL OR sent_at IS NULL, NULL,
            toUInt32(greatest(0, dateDiff('millisecond', assumeNotNull(sent_at), assumeNotNull(converted_at)))))
         AS Nullable(UInt32)) AS conversion_ms
FROM
(
    SELECT
        provider, message_id, phone_hash,
        identity(phone_masked) AS p_masked, identity(carrier) AS p_carrier, identity(country_code) AS p_country,
        identity(province) AS p_province, identity(city) AS p_city,
        identity(template) AS p_template, identity(sign) AS p_sign, identity(segments) AS p_segments,
        identity(receipt_segments) AS p_receipt_segments,
        identity(out_id) AS p_out_id, identity(sent_at) AS p_sent_at, identity(receipt_sent_at) AS p_receipt_sent_at,
        identity(outcome) AS o, identity(receipt_ids) AS rids,
        identity(first_seen_at) AS p_first_seen, identity(updated_at) AS p_updated,
        identity(converted_at) AS p_converted
    FROM sms.message_parts FINAL
);


-- The current rollups: the newest generation of every minute (older generations are leftovers of
-- earlier recomputes). Sentinel rows (sent = 0) only mark a recompute of an emptied minute.
CREATE OR REPLACE VIEW sms.rollup_minute AS
SELECT
    minute, provider, carrier, template, sign, country_code, province, failure_category, sent, delivered, failed,
    expired, pending, segments, final_within_1m, final_within_5m, final_within_30m, delivered_within,
    latency_state, latency_sum_ms, converted, delivered_unconverted, conversion_ms_sum
FROM sms.rollup_minute_raw FINAL
WHERE sent > 0
  AND (minute, generation) IN (SELECT minute, max(generation) FROM sms.rollup_minute_raw GROUP BY minute);

-- The panels' rollups (migrations/0009, written by the same recompute): the newest generation of
-- every minute, or of every (grain, level, bucket).
CREATE OR REPLACE VIEW sms.rollup_error_minute AS
SELECT
    minute, provider, carrier, template, sign, country_code, province, failure_category, error_code, outcome_stage,
    messages,
    first_seen, last_seen, example_message
FROM sms.rollup_error_minute_raw FINAL
WHERE messages > 0
  AND (minute, generation) IN (SELECT minute, max(generation) FROM sms.rollup_error_minute_raw GROUP BY minute);

CREATE OR REPLACE VIEW sms.undelivered_messages AS
SELECT
    minute, provider, message_id, phone_hash, phone_masked, carrier, country_code, province, template, sign, sent_at,
    CAST(if(stored_status IN ('pending', 'expired'),
            if(sent_at < now64(3) - toIntervalSecond({expire_after_seconds}), 'expired', 'pending'), stored_status)
         AS Enum8('pending' = 0, 'delivered' = 1, 'failed' = 2, 'expired' = 3)) AS status,
    error_code, error_message,
    CAST(if(status = 'expired', 'expired', if(stored_status = 'pending', '', stored_category)) AS LowCardinality(String))
        AS failure_category,
    outcome_stage
FROM
(
    SELECT minute, provider, message_id, phone_hash, phone_masked, carrier, country_code, province, template, sign,
           sent_at, status AS stored_status, error_code, error_message, failure_category AS stored_category, outcome_stage
    FROM sms.undelivered_messages_raw FINAL
    WHERE provider != ''
      AND (minute, generation) IN (SELECT minute, max(generation) FROM sms.undelivered_messages_raw GROUP BY minute)
);

CREATE OR REPLACE VIEW sms.rollup_level AS
SELECT
    grain, level, bucket, provider, carrier, template, sign, country_code, province, sent, delivered, failed, expired,
    pending,
    segments, final_within_1m, final_within_5m, final_within_30m, delivered_within, latency_state, latency_sum_ms,
    latency_quantiles, converted, delivered_unconverted, conversion_ms_sum
FROM sms.rollup_level_raw FINAL
WHERE sent > 0
  AND (grain, level, bucket, generation) IN (
      SELECT grain, level, bucket, max(generation) FROM sms.rollup_level_generations GROUP BY grain, level, bucket);

-- Failure codes whose meaning the knowledge base does not give (not in the provider documents'
-- tables, or in them with a text that names no cause): new codes for ops to look at.
CREATE OR REPLACE VIEW sms.unmapped_codes AS
SELECT
    provider,
    carrier,
    error_code AS code,
    outcome_stage AS stage,
    min(coalesce(reported_at, sent_at, first_seen_at)) AS first_seen,
    max(coalesce(reported_at, sent_at, first_seen_at)) AS last_seen,
    count() AS count,
    any(error_message) AS example_message
FROM sms.messages
WHERE status = 'failed' AND failure_category = 'unknown'
GROUP BY provider, carrier, code, stage;

-- Receipt lag per provider: now minus the newest receipt's report time. A lag that grows while
-- sends continue is a receipt blackout. A receipt dated ahead of our clock (a provider's clock, a
-- test's data) counts as just now: 0, never negative.
CREATE OR REPLACE VIEW sms.receipt_lag AS
SELECT
    provider,
    max(tupleElement(identity(outcome), 'at')) AS newest_receipt_at,
    greatest(0, dateDiff('second', newest_receipt_at, now64(3))) AS lag_seconds
FROM sms.message_parts
WHERE tupleElement(identity(outcome), 'stage') = 'receipt'
GROUP BY provider;

-- Receipt completeness per provider, carrier and hour sent: the share of sends with a final
-- receipt within 1, 5 and 30 minutes of the send (from the hourly provider × carrier rollups,
-- the sums of sms.rollup_minute's rows of the hour).
CREATE OR REPLACE VIEW sms.receipt_completeness AS
SELECT
    provider,
    carrier,
    bucket AS hour,
    sum(r.sent) AS sent,
    sum(r.final_within_1m) / sum(r.sent) AS within_1m,
    sum(r.final_within_5m) / sum(r.sent) AS within_5m,
    sum(r.final_within_30m) / sum(r.sent) AS within_30m
FROM sms.rollup_level AS r
WHERE grain = 'provider_carrier' AND level = 3600
GROUP BY provider, carrier, hour;

-- Maturation of each hourly send cohort: its delivery rate as receipts arrive (delivered within
-- N seconds of the send, over the cohort's sends: provisional) against its rate now (final once
-- nothing is pending). `age_seconds[i]` pairs with `provisional_rate[i]`. From the hourly provider ×
-- carrier rollups.
CREATE OR REPLACE VIEW sms.cohort_maturation AS
SELECT
    provider,
    hour,
    sent,
    [{maturation_seconds}] AS age_seconds,
    arrayMap(x -> x / sent, delivered_by_age) AS provisional_rate,
    delivered / (delivered + failed + expired) AS delivery_rate,
    pending
FROM
(
    SELECT
        provider, bucket AS hour, sum(r.sent) AS sent, sumForEach(r.delivered_within) AS delivered_by_age,
        sum(r.delivered) AS delivered, sum(r.failed) AS failed, sum(r.expired) AS expired, sum(r.pending) AS pending
    FROM sms.rollup_level AS r
    WHERE grain = 'provider_carrier' AND level = 3600
    GROUP BY provider, hour
);

-- Our counts against the provider's own statistics, per provider and hour (UTC). Tencent's
-- callback classes map onto our categories: InternalError -> carrier_error, InvalidNumber ->
-- invalid_number, ShutdownError -> unreachable, BlackList -> blacklisted, FrequencyLimit ->
-- rate_limited. `*_diff` is ours minus theirs. Alibaba's statistics (QuerySendStatistics) are per
-- China-time send date: its rows are days (`hour` the day's start in UTC, `period_hours` 24; ours
-- grouped the same way); their_sent is its TotalCount, their_delivered / their_failed its
-- RespondedSuccessCount / RespondedFailCount, and it has no failure classes (those stay 0).
CREATE OR REPLACE VIEW sms.reconciliation AS
SELECT
    provider,
    hour,
    if(provider = 'aliyun', 24, 1) AS period_hours,
    ours.sent AS our_sent,
    theirs.request_success_count AS their_sent,
    ours.delivered AS our_delivered,
    theirs.callback_success_count AS their_delivered,
    ours.failed_total AS our_failed,
    theirs.callback_fail_count AS their_failed,
    ours.carrier_error AS our_carrier_error,
    theirs.internal_error_count AS their_internal_error,
    ours.invalid_number AS our_invalid_number,
    theirs.invalid_number_count AS their_invalid_number,
    ours.unreachable AS our_unreachable,
    theirs.shutdown_error_count AS their_shutdown_error,
    ours.blacklisted AS our_blacklisted,
    theirs.blacklist_count AS their_blacklist,
    ours.rate_limited AS our_rate_limited,
    theirs.frequency_limit_count AS their_frequency_limit,
    toInt64(ours.sent) - toInt64(theirs.request_success_count) AS sent_diff,
    toInt64(ours.delivered) - toInt64(theirs.callback_success_count) AS delivered_diff,
    toInt64(ours.failed_total) - toInt64(theirs.callback_fail_count) AS failed_diff
FROM
(
    SELECT provider, hour, sum(sent) AS sent, sum(delivered) AS delivered, sum(failed_total) AS failed_total,
           sum(carrier_error) AS carrier_error, sum(invalid_number) AS invalid_number, sum(unreachable) AS unreachable,
           sum(blacklisted) AS blacklisted, sum(rate_limited) AS rate_limited
    FROM
    (
        -- the hourly provider × carrier rollups (China's day starts on a UTC hour), and the failed messages
        -- by category from the error-code rollups: the minute rollups have ~3x the rows with the province
        SELECT
            provider,
            if(provider = 'aliyun', toTimeZone(toStartOfDay(bucket, 'Asia/Shanghai'), 'UTC'), bucket) AS hour,
            r.sent AS sent, r.delivered AS delivered, r.failed + r.expired AS failed_total, 0 AS carrier_error,
            0 AS invalid_number, 0 AS unreachable, 0 AS blacklisted, 0 AS rate_limited
        FROM sms.rollup_level AS r
        WHERE grain = 'provider_carrier' AND level = 3600
        UNION ALL
        SELECT
            provider,
            if(provider = 'aliyun', toTimeZone(toStartOfDay(minute, 'Asia/Shanghai'), 'UTC'), toStartOfHour(minute)) AS hour,
            0, 0, 0, if(e.failure_category = 'carrier_error', e.messages, 0),
            if(e.failure_category = 'invalid_number', e.messages, 0), if(e.failure_category = 'unreachable', e.messages, 0),
            if(e.failure_category = 'blacklisted', e.messages, 0), if(e.failure_category = 'rate_limited', e.messages, 0)
        FROM sms.rollup_error_minute AS e
        WHERE e.failure_category IN ('carrier_error', 'invalid_number', 'unreachable', 'blacklisted', 'rate_limited')
    )
    GROUP BY provider, hour
) AS ours
FULL OUTER JOIN
(
    SELECT
        provider, hour, sum(request_success_count) AS request_success_count,
        sum(callback_success_count) AS callback_success_count, sum(callback_fail_count) AS callback_fail_count,
        sum(internal_error_count) AS internal_error_count, sum(invalid_number_count) AS invalid_number_count,
        sum(shutdown_error_count) AS shutdown_error_count, sum(blacklist_count) AS blacklist_count,
        sum(frequency_limit_count) AS frequency_limit_count
    FROM sms.provider_stats FINAL
    GROUP BY provider, hour
) AS theirs USING (provider, hour);

-- Uplink linked to the latest send to the same number (any provider) within 48 h before it.
CREATE OR REPLACE VIEW sms.replies_linked AS
SELECT
    r.provider AS provider, r.reply_id AS reply_id, r.phone_hash AS phone_hash, r.phone_masked AS phone_masked,
    r.content AS content, r.sign AS sign, r.dest_code AS dest_code, r.replied_at AS replied_at,
    if(m.sent_at > toDateTime64(0, 3, 'UTC') AND r.replied_at - m.sent_at <= 48 * 3600, m.provider, '') AS linked_provider,
    if(linked_provider != '', m.message_id, '') AS linked_message_id,
    if(linked_provider != '', m.template, '') AS linked_template,
    if(linked_provider != '', m.sent_at, NULL) AS linked_sent_at
FROM (SELECT * FROM sms.replies FINAL) AS r
ASOF LEFT JOIN
(
    SELECT provider, message_id, phone_hash, template, assumeNotNull(sent_at) AS sent_at
    FROM sms.messages WHERE sent_at IS NOT NULL
) AS m
ON r.phone_hash = m.phone_hash AND r.replied_at >= m.sent_at;
