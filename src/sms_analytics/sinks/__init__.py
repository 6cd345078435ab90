"""The warehouse side: the ClickHouse schema (`migrations/`, `views.sql`, `retention.sql`,
`dictionaries.sql`) and its runner (`warehouse.py`, with the cluster forms in `cluster.py`), the
batched idempotent writer from the output topics (`writer.py`, rows in `rows.py`), the exact minute
rollups (`rollups.py`), the reference tables (`error_codes.py`, `template_names.py`) and the
read-only query endpoint with its one client (`query_api.py`). Where this ends: rows in ClickHouse
and answers to read-only queries."""
