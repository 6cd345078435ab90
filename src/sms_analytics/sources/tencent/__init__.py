"""Tencent Cloud SMS (seed 002): `parsers.py` (sends, status/reply callbacks and pulls), `client.py`
(the official SDK, async) and `feeds.py` (the pulls, the hourly statistics, the compensation query)."""
