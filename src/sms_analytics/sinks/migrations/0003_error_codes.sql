-- The error-code knowledge base (src/sms_analytics/model/error_codes.csv, built from the provider
-- documents), loaded at start when its version changes (sinks/error_codes.py).
CREATE TABLE IF NOT EXISTS sms.error_codes
(
    source LowCardinality(String),
    carrier LowCardinality(String),
    code String,
    stage LowCardinality(String),
    description String,
    action String,
    failure_category LowCardinality(String),
    permanent Bool,
    seed_file LowCardinality(String),
    seed_line UInt32,
    kb_version LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (source, code, carrier, stage);

-- What the pipeline's lookup resolves for each (provider, our carrier, code, stage): the provider's
-- own table for that carrier first, then its all-carrier rows, then the shared CMPP / map tables.
CREATE TABLE IF NOT EXISTS sms.error_code_lookup
(
    provider LowCardinality(String),
    carrier LowCardinality(String),
    code String,
    stage LowCardinality(String),
    source LowCardinality(String),
    source_carrier LowCardinality(String),
    description String,
    action String,
    failure_category LowCardinality(String),
    permanent Bool,
    kb_version LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (provider, code, carrier, stage);

-- Its dictionary, sms.error_code_dict, is (re)created at every start: sinks/dictionaries.sql.
