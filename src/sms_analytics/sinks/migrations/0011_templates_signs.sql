-- The providers' templates and signs as their metadata APIs describe them (Alibaba QuerySmsTemplate and
-- QuerySmsSign, seed 000; Tencent DescribeSmsTemplateList and DescribeSmsSignList, seed 002), written by
-- the metadata pull feeds every SMS_METADATA_INTERVAL. A later pull replaces the earlier row (read with
-- FINAL, or through the dictionaries of sinks/dictionaries.sql).
-- type: verification, notification, marketing, international or other, from raw_type (Alibaba
-- TemplateType 0/1/2/3; Tencent's list has no type: International 1 is international, else other).
-- status: approved, reviewing, approved_not_effective, rejected or unknown, from raw_status (Alibaba
-- TemplateStatus/SignStatus 0/1/2; Tencent StatusCode 0/1/2/-1).
-- No TTL (sinks/warehouse.py NO_TTL): one row per template or sign, replaced by the next pull. On a
-- cluster a full replica on every node (sinks/cluster.py EVERY_NODE): the dictionaries read them locally.
CREATE TABLE IF NOT EXISTS sms.templates
(
    provider LowCardinality(String),
    template_code String,
    name String,
    content String,
    type LowCardinality(String),
    raw_type String,
    status LowCardinality(String),
    raw_status String,
    reason String,
    pulled_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(pulled_at)
ORDER BY (provider, template_code);

CREATE TABLE IF NOT EXISTS sms.signs
(
    provider LowCardinality(String),
    sign_name String,
    sign_id String,
    status LowCardinality(String),
    raw_status String,
    reason String,
    pulled_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(pulled_at)
ORDER BY (provider, sign_name);

-- SMS_TEMPLATE_NAMES may give a template's type (sinks/template_names.py), over its provider's.
ALTER TABLE sms.template_names ADD COLUMN IF NOT EXISTS type LowCardinality(String) DEFAULT '';
