-- The TTL of every time-series table (migrations/0010_retention.sql says which tables have none and
-- why). Applied at every start by Warehouse.apply_retention, only to the tables whose TTL differs:
-- {message_days} is SMS_RETENTION_DAYS, {rollup_days} SMS_ROLLUP_RETENTION_DAYS. One statement per
-- table, `ALTER TABLE <table> MODIFY TTL <expression>`, nothing else.
-- toDateTime: every TTL is a DateTime, the type any ClickHouse version takes for one.
--
-- Per message, SMS_RETENTION_DAYS:
-- the parts of a message, from the later of their write and their send (migrations/0010);
ALTER TABLE sms.message_parts MODIFY TTL greatest(stored_at, toDateTime(coalesce(sent_at, receipt_sent_at, stored_at))) + toIntervalDay({message_days});
-- conversions, from when the receiver took them;
ALTER TABLE sms.conversions MODIFY TTL toDateTime(received_at) + toIntervalDay({message_days});
-- replies, from when the receiver took them;
ALTER TABLE sms.replies MODIFY TTL toDateTime(received_at) + toIntervalDay({message_days});
-- the undelivered messages of "Failed numbers with reasons", from their minute sent: written by the rollup
-- recompute, which stops recomputing a minute before its message parts can go.
ALTER TABLE sms.undelivered_messages_raw MODIFY TTL minute + toIntervalDay({message_days});
--
-- Rollups and other time series, SMS_ROLLUP_RETENTION_DAYS: a minute's rollups outlive its messages.
ALTER TABLE sms.rollup_minute_raw MODIFY TTL minute + toIntervalDay({rollup_days});
ALTER TABLE sms.rollup_error_minute_raw MODIFY TTL minute + toIntervalDay({rollup_days});
-- a coarser bucket goes when all of its minutes have gone: from its end.
ALTER TABLE sms.rollup_level_raw MODIFY TTL bucket + toIntervalSecond(level) + toIntervalDay({rollup_days});
ALTER TABLE sms.rollup_level_generations MODIFY TTL bucket + toIntervalSecond(level) + toIntervalDay({rollup_days});
ALTER TABLE sms.alerts MODIFY TTL toDateTime(at) + toIntervalDay({rollup_days});
ALTER TABLE sms.provider_stats MODIFY TTL hour + toIntervalDay({rollup_days});
ALTER TABLE sms.provider_balance MODIFY TTL toDateTime(at) + toIntervalDay({rollup_days});
