"""The faust app (`app.py`): the send <-> receipt join (`join.py`) over a table with a batch changelog
(`state.py`), failure classes, latency, compensation requests, and the in-stream alerts (`alerts.py`,
rules in `alert_rules.yaml`). Where this ends: deliveries and alerts on the output topics."""
