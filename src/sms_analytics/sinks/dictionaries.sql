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
CREATE OR REPLACE DICTIONARY sms.template_name_dict
(
    provider String,
    template String,
    sign String,
    name String
)
PRIMARY KEY provider, template, sign
SOURCE(CLICKHOUSE(DB 'sms' TABLE 'template_names'{source_auth}))
LIFETIME(MIN 0 MAX 300)
LAYOUT(COMPLEX_KEY_HASHED());
