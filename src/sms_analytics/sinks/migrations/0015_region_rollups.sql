-- Province as a dimension of the rollups (issue 17; migrations/0014 put it on sms.message_parts). The
-- recompute (sinks/rollups.py) writes it after country_code, where its positional INSERTs put it:
-- sms.rollup_minute_raw and sms.rollup_error_minute_raw per province; sms.rollup_level_raw per
-- province at grain 'full' and the new grain 'provider_carrier_province' (the province × carrier
-- panels and alert), '' (all provinces) at the grains 'provider_carrier' and 'carrier' and at the new
-- grain 'all_provinces' (every other dimension: the former full grain, which the panels over templates
-- and signs read while the region is All; with the province the full grain's rows are ~3x as many);
-- sms.undelivered_messages_raw carries it for the panels' region filter. '' is also a message the data
-- cannot place (not a mainland mobile number, a segment phonenumbers does not know).
-- One ALTER per table adds the column and appends it to the sorting key: ClickHouse allows a column
-- in MODIFY ORDER BY only in the ALTER that adds it, and only without a default expression (a String
-- column's implicit default is '' anyway; rows of before read ''). Re-runnable: the second time the
-- column exists (IF NOT EXISTS) and MODIFY ORDER BY names the sorting key the table already has,
-- which ClickHouse accepts as a no-op (tests/integration/test_rollups_region.py runs it twice). The
-- primary key (the index) stays the old sorting key: province only orders rows within it.
-- Rows rolled up before this migration have province '': at start every minute without rows of
-- the newest grain ('all_provinces') is recomputed (Rollups.recover, BACKFILL_PER_ROUND a round, newest
-- first), which rewrites its rows per province.
ALTER TABLE sms.rollup_minute_raw ADD COLUMN IF NOT EXISTS province LowCardinality(String) AFTER country_code, MODIFY ORDER BY (minute, provider, carrier, template, sign, country_code, failure_category, province);
ALTER TABLE sms.rollup_error_minute_raw ADD COLUMN IF NOT EXISTS province LowCardinality(String) AFTER country_code, MODIFY ORDER BY (minute, provider, carrier, template, sign, country_code, failure_category, error_code, outcome_stage, province);
ALTER TABLE sms.rollup_level_raw ADD COLUMN IF NOT EXISTS province LowCardinality(String) AFTER country_code, MODIFY ORDER BY (grain, level, bucket, provider, carrier, template, sign, country_code, province);
ALTER TABLE sms.undelivered_messages_raw ADD COLUMN IF NOT EXISTS province LowCardinality(String) AFTER country_code;
