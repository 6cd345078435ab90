-- The dictionaries, re-created at every start (Warehouse.migrate) with the warehouse user's own
-- credentials in {source_auth}: a CLICKHOUSE source without USER connects as `default` with an empty
-- password (src/Dictionaries/ClickHouseDictionarySource.cpp authenticates even a local source), and
-- the clickhouse-server image removes `default` when CLICKHOUSE_USER names another user. The
-- password is shown as [HIDDEN] by SHOW CREATE and system.tables. On chDB {source_auth} is empty.

-- dictGet('sms.error_code_dict', 'description', (provider, carrier, error_code, outcome_stage))
CREATE OR REPLACE DICTIONARY sms.error_code_dict
(
    provider String,
    carrier String,
    code String,
    stage String,
    source String,
    source_carrier String,
    description String,
    action String,
    failure_category String,
    permanent UInt8
)
PRIMARY KEY provider, carrier, code, stage
SOURCE(CLICKHOUSE(DB 'sms' TABLE 'error_code_lookup'{source_auth}))
LIFETIME(MIN 0 MAX 3600)
LAYOUT(COMPLEX_KEY_HASHED());

-- dictGetOrDefault('sms.template_name_dict', 'name', (provider, template, sign), …): the exact sign
-- first, then (provider, template, ''), else the raw template (see dashboards/build.py TEMPLATE_NAME).
-- Its rows: the SMS_TEMPLATE_NAMES mapping (sms.template_names), and for every template the mapping has
-- no sign-less row for, the name the provider's metadata API gives it (sms.templates, the metadata
-- feeds): a mapping row wins over the synced name. Reloaded when either changes: by a start's load of the
-- mapping (sinks/template_names.py) and by the sink once it wrote a pull (sinks/writer.py: chDB does not
-- reload a dictionary by its LIFETIME).
CREATE OR REPLACE DICTIONARY sms.template_name_dict
(
    provider String,
    template String,
    sign String,
    name String
)
PRIMARY KEY provider, template, sign
SOURCE(CLICKHOUSE(QUERY 'SELECT provider, template, sign, name FROM sms.template_names UNION ALL SELECT provider, template_code AS template, \'\' AS sign, name FROM sms.templates FINAL WHERE name != \'\' AND (provider, template_code) NOT IN (SELECT provider, template FROM sms.template_names WHERE sign = \'\')'{source_auth}))
LIFETIME(MIN 0 MAX 300)
LAYOUT(COMPLEX_KEY_HASHED());

-- dictGetOrDefault('sms.template_info_dict', 'type', (provider, template), 'other'): a template's
-- normalized type (verification, notification, marketing, international, other), its provider's raw type
-- code, its review status and name, from the metadata feeds (sms.templates, the newest pull); a type the
-- SMS_TEMPLATE_NAMES mapping gives the template (a row without a sign) wins over the provider's. A
-- template neither describes is 'other' (dashboards/build.py TEMPLATE_TYPE). Reloaded by the sink after a
-- pull and by a start's load of the mapping.
CREATE OR REPLACE DICTIONARY sms.template_info_dict
(
    provider String,
    template String,
    name String,
    type String,
    raw_type String,
    status String
)
PRIMARY KEY provider, template
SOURCE(CLICKHOUSE(QUERY 'SELECT provider, template, anyIf(name, mapped = 0) AS name, argMax(type, mapped) AS type, anyIf(raw_type, mapped = 0) AS raw_type, anyIf(status, mapped = 0) AS status FROM (SELECT provider, template_code AS template, name, toString(type) AS type, raw_type, toString(status) AS status, 0 AS mapped FROM sms.templates FINAL UNION ALL SELECT provider, template, name, toString(type) AS type, \'\' AS raw_type, \'\' AS status, 1 AS mapped FROM sms.template_names WHERE sign = \'\' AND type != \'\') GROUP BY provider, template'{source_auth}))
LIFETIME(MIN 0 MAX 300)
LAYOUT(COMPLEX_KEY_HASHED());
