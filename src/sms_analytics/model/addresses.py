"""Host names and addresses, as the settings give them (shared by the sources and the sinks)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether `host` (a name, an IPv4 or IPv6 address, bracketed or not) stays on this machine:
    binding it keeps an endpoint local, and a client talking to it reaches a local simulator."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
