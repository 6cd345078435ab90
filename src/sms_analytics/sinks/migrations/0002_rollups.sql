-- Minute rollups of the send cohorts: one row per (minute sent, provider, carrier, template, sign,
-- country, failure_category), recomputed from sms.messages whenever a message of that minute
-- changes (see sinks/rollups.py). Every recompute of a minute writes all of the minute's rows with
-- one `generation`; readers use the view sms.rollup_minute, which keeps the newest generation of
-- each minute, so a late receipt corrects its minute instead of adding to it.
CREATE TABLE IF NOT EXISTS sms.rollup_minute_raw
(
    minute DateTime('UTC'),
    provider LowCardinality(String),
    carrier LowCardinality(String),
    template String,
    sign String,
    country_code LowCardinality(String),
    failure_category LowCardinality(String),
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
    generation DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(generation)
ORDER BY (minute, provider, carrier, template, sign, country_code, failure_category);
