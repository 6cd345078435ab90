"""The KX aggregator (seed 001): `parsers.py` (MT/P2PBatch sends, Report and MO pushes), `client.py`
(its md5-signed HTTP API) and `feeds.py` (MTQuery, MOQuery, Balance)."""
