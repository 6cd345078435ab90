"""What people look at: the run summary, Grafana dashboards and provisioning (later: alert rules)."""
