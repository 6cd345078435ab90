-- Business names of the providers' templates (SMS_TEMPLATE_NAMES, a CSV file; sinks/template_names.py),
-- replaced at every start: each provider registers its own template ids (Alibaba SMS_153055065,
-- Tencent 449739, KX none: its messages are told apart by their sign), so comparing providers on
-- "the same template" needs a name they share. `sign` = '' matches any sign.
CREATE TABLE IF NOT EXISTS sms.template_names
(
    provider LowCardinality(String),
    template String,
    sign String,
    name String,
    source String,
    line UInt32,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (provider, template, sign);

-- Its dictionary, sms.template_name_dict, is (re)created at every start: sinks/dictionaries.sql.
