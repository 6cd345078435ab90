"""The faust app (`app.py`: declarations and wiring): the send <-> receipt join agent (`agents.py`,
one message's merge in `join.py`) over a table with a batch changelog (`state.py`), failure
classes, latency, compensation requests and forgetting (`compensation.py`), and the in-stream
alerts (`alerts.py`, rules `AlertRules` of the settings, defaults in `alert_rules.yaml`); faust's
adjustments in `overrides.py`, what one app's agents share in `context.py`. Where this ends:
deliveries and alerts on the output topics."""
