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

-- dictGetOrDefault('sms.template_name_dict', 'name', (provider, template, sign), …): the exact sign
-- first, then (provider, template, ''), else the raw template (see dashboards/build.py TEMPLATE_NAME).
CREATE DICTIONARY IF NOT EXISTS sms.template_name_dict
(
    provider String,
    template String,
    sign String,
    name String
)
PRIMARY KEY provider, template, sign
SOURCE(CLICKHOUSE(DB 'sms' TABLE 'template_names'))
LIFETIME(MIN 0 MAX 300)
LAYOUT(COMPLEX_KEY_HASHED());
