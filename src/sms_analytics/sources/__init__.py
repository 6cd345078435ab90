"""Provider payloads in, events out: HTTP receivers (and, later, pollers)."""
