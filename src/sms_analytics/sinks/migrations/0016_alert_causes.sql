-- The root cause of a drop alert (issue 17): the top slices model/rootcause.py found to explain it, where
-- the alert came from (the stream's detectors, or a Grafana rule relayed through dashboards/relay.py) and
-- the baseline its causes were measured against ('previous' window, or the same hour of the last 7 days,
-- 'week'; '' for an alert with no causes: a blackout, a latency or conversion alert, a resolution).
-- A cause: dimension (carrier, province, template, sign, error_code), its value, its share of the excess
-- failures (0..1), the excess (failures beyond the baseline rate), its failures and volume in the window, its
-- failure rate now and in the baseline, and an error code's meaning from the knowledge base.
-- Re-runnable (IF NOT EXISTS); rows written before it have no causes.
ALTER TABLE sms.alerts ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT 'stream';
ALTER TABLE sms.alerts ADD COLUMN IF NOT EXISTS baseline LowCardinality(String) DEFAULT '';
ALTER TABLE sms.alerts ADD COLUMN IF NOT EXISTS causes Array(Tuple(dimension String, value String, share Float64, excess Float64, failures Float64, volume Float64, rate Float64, baseline_rate Float64, meaning String));
