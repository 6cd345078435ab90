-- The period a provider_stats row covers: 1 hour (Tencent's hourly statistics, the default for the
-- rows already written) or 24 (Alibaba QuerySendStatistics, one row per China-time send date whose
-- `hour` is that day's start, 16:00 UTC of the day before). sms.reconciliation (views.sql) groups our
-- counts into the same periods.
ALTER TABLE sms.provider_stats ADD COLUMN IF NOT EXISTS period_hours UInt16 DEFAULT 1;
