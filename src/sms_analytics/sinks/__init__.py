"""The warehouse side: ClickHouse schema and migrations, the batched idempotent writer."""
