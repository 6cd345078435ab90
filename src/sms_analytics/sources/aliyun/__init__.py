"""Alibaba Cloud SMS (seed 000): `parsers.py` (sends, SmsReport/SmsUp, QuerySendDetails), `client.py`
(the official SDK, async), `mns.py` (SmsReport/SmsUp pulled from MNS) and `feeds.py` (which of them
run, and the compensation query)."""
