"""What people look at: the run summary (`summary.py`), the Grafana dashboards as code (`build.py`,
with the plugin's macros in `macros.py`), the Grafana alert rules (`alerting.py`), the pipeline's own
health dashboard and rules (`pipeline_health.py`), the static HTML report (`report.py`) and the push
into a running Grafana (`push.py`), the relay of Grafana's alerts to sms.alerts.v1 with their causes
(`relay.py`, over `why.py`). They read the warehouse; nothing here writes it."""
