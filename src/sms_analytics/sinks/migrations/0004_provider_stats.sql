-- The providers' own hourly statistics (Tencent SendStatusStatistics and CallbackStatusStatistics,
-- seed 002), one row per provider, application and hour (UTC), written by the pull feeds. A later
-- pull of the same hour replaces the earlier one.
CREATE TABLE IF NOT EXISTS sms.provider_stats
(
    provider LowCardinality(String),
    app_id String,
    hour DateTime('UTC'),
    request_count UInt64,
    request_success_count UInt64,
    fee_count UInt64,
    callback_count UInt64,
    callback_success_count UInt64,
    callback_fail_count UInt64,
    internal_error_count UInt64,
    invalid_number_count UInt64,
    shutdown_error_count UInt64,
    blacklist_count UInt64,
    frequency_limit_count UInt64,
    pulled_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(pulled_at)
ORDER BY (provider, app_id, hour);
