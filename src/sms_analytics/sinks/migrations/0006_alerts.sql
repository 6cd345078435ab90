-- Alerts from the stream's detectors (topic sms.alerts.v1): one row per firing or resolved record.
CREATE TABLE IF NOT EXISTS sms.alerts
(
    rule LowCardinality(String),
    key String,
    state LowCardinality(String),
    value Float64,
    threshold Float64,
    window_seconds UInt32,
    started_at DateTime64(3, 'UTC'),
    at DateTime64(3, 'UTC'),
    summary String
)
ENGINE = ReplacingMergeTree
ORDER BY (rule, key, started_at, state, at);
