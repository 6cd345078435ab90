-- Provider account balances (KX Balance) as a gauge: one row per reading.
CREATE TABLE IF NOT EXISTS sms.provider_balance
(
    provider LowCardinality(String),
    account String,
    balance Int64,
    at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (provider, account, at);
