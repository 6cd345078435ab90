"""The dictionaries' CLICKHOUSE source signs in as the warehouse's own user (sinks/dictionaries.sql).

On a server, a source without USER signs in as `default` with an empty password, which the
clickhouse-server image removes when CLICKHOUSE_USER names another user: every dictGet would fail.
chDB has users too (`default`, no password), and it authenticates a local dictionary source the same
way a server does (src/Dictionaries/ClickHouseDictionarySource.cpp), so the rendered DDL is run here
against real ClickHouse: the named user is the one that signs in, and its password stays hidden.
"""

from __future__ import annotations

import pytest

from sms_analytics.sinks.warehouse import migrations, source_auth


@pytest.mark.parametrize("url, want", [
    ("chdb:///var/lib/sms/warehouse", ""),
    ("http://clickhouse:8123", ""),
    ("http://sms:s3cret@clickhouse:8123", " USER 'sms' PASSWORD 's3cret'"),
    ("https://sms:p%40ss'w%3Bd%5C@ch.example:8443", " USER 'sms' PASSWORD 'p@ss\\'w;d\\\\'"),
])
def test_the_source_signs_in_with_the_urls_credentials(url: str, want: str) -> None:
    assert source_auth(url) == want


def test_no_migration_creates_a_dictionary_without_credentials() -> None:
    for version, sql in migrations():
        assert "CREATE DICTIONARY" not in sql.upper(), version


