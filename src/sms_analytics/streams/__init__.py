"""The faust app: send <-> receipt join, enrichment (later: alerts)."""
