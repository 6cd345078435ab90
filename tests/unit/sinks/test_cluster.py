"""sinks/cluster.py without chDB: cluster forms of the statements and what is refused (from tests/test_cluster.py)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from sms_analytics.settings import Settings
from sms_analytics.sinks.cluster import ClusterError, cluster_form
from sms_analytics.sinks.warehouse import Warehouse, ddl
from tests.integration.test_cluster import CLUSTER, CLUSTERED, ON_EVERY_NODE, SINGLE


def test_a_generation_filter_over_tables_sharded_apart_is_refused() -> None:
    view = ("CREATE OR REPLACE VIEW sms.v AS SELECT * FROM sms.replies FINAL "
            "WHERE (minute, generation) IN (SELECT minute, max(generation) FROM sms.rollup_minute_raw GROUP BY minute)")
    with pytest.raises(ClusterError, match="not sharded by the same key"):
        cluster_form(view, CLUSTER)


def test_alters_go_to_the_local_tables_and_new_columns_to_the_distributed_too() -> None:
    alters = [c for c in CLUSTERED if c.startswith("ALTER TABLE")]
    retention = [c for c in alters if " MODIFY TTL " in c]
    assert len(retention) == 11 and all(re.match(r"ALTER TABLE sms\.\w+_local ON CLUSTER", c) for c in retention)
    added = [c for c in alters if " ADD COLUMN " in c]
    pair = ["ALTER TABLE sms.{}_local", "ALTER TABLE sms.{}"]
    want = [p.format(t) for t in ["message_parts"] for p in pair]  # 0010 stored_at
    want.append("ALTER TABLE sms.template_names")  # 0011, on every node: no _local
    want += [p.format(t) for t in ["provider_stats"] for p in pair]  # 0012 period_hours
    want += [p.format(t) for t in ["message_parts", *["rollup_minute_raw"] * 3, *["rollup_level_raw"] * 3]
             for p in pair]  # 0013: conversions
    want += [p.format(t) for t in ["message_parts"] * 2 + ["delivery_ingest"] * 2 + ["delivery_ingest_raw"] * 2
             for p in pair]  # 0014: province and city
    want += [p.format(t) for t in ["rollup_minute_raw", "rollup_error_minute_raw", "rollup_level_raw",
                                   "undelivered_messages_raw"] for p in pair]  # 0015: province in the rollups
    want += [p.format(t) for t in ["alerts"] * 3 for p in pair]  # 0016: source, baseline, causes
    assert [c.split(" ON CLUSTER")[0] for c in added] == want
    # 0015 appends province to the local tables' sorting keys; a Distributed table has none: columns only
    sorting = [c for c in added if "MODIFY ORDER BY" in c]
    assert [c.split(" ON CLUSTER")[0] for c in sorting] == [
        f"ALTER TABLE sms.{t}_local" for t in ("rollup_minute_raw", "rollup_error_minute_raw", "rollup_level_raw")]
    assert all(c.endswith(", province)") for c in sorting)
    others = [c for c in alters if " ADD COLUMN " not in c]
    assert all(re.match(r"ALTER TABLE sms\.\w+_local ON CLUSTER", c) for c in others)


def test_dictionaries_read_tables_on_every_node() -> None:
    dictionaries = [c for c in CLUSTERED if c.startswith("CREATE OR REPLACE DICTIONARY")]
    assert len(dictionaries) == 3
    for sql in dictionaries:
        read = re.findall(r"TABLE '(\w+)'|FROM sms\.(\w+)", sql)
        assert read and all((table or query) in ON_EVERY_NODE for table, query in read)
    with pytest.raises(ClusterError, match="not on every node"):
        cluster_form("CREATE OR REPLACE DICTIONARY sms.d (k String, v String) PRIMARY KEY k "
                     "SOURCE(CLICKHOUSE(DB 'sms' TABLE 'replies')) LIFETIME(0) LAYOUT(COMPLEX_KEY_HASHED())", CLUSTER)
    with pytest.raises(ClusterError, match="not on every node"):  # a QUERY source's tables too
        cluster_form("CREATE OR REPLACE DICTIONARY sms.d (k String, v String) PRIMARY KEY k "
                     "SOURCE(CLICKHOUSE(QUERY 'SELECT k, v FROM sms.templates UNION ALL SELECT k, v FROM sms.replies')) "
                     "LIFETIME(0) LAYOUT(COMPLEX_KEY_HASHED())", CLUSTER)


@pytest.mark.parametrize("engine", ["Memory", "Log", "ReplicatedMergeTree('/p', 'r')", "Buffer(sms, x, 1, 1, 1, 1, 1, 1, 1)"])
def test_an_unknown_engine_is_refused(engine: str) -> None:
    with pytest.raises(ClusterError):
        cluster_form(f"CREATE TABLE IF NOT EXISTS sms.replies (a String) ENGINE = {engine}", CLUSTER)


def test_a_table_or_statement_without_a_cluster_form_is_refused() -> None:
    with pytest.raises(ClusterError, match="no place on a cluster"):
        cluster_form("CREATE TABLE IF NOT EXISTS sms.new_table (a String) ENGINE = MergeTree ORDER BY a", CLUSTER)
    with pytest.raises(ClusterError, match="no place on a cluster"):
        cluster_form("ALTER TABLE sms.new_table ADD COLUMN b String", CLUSTER)
    with pytest.raises(ClusterError, match="no cluster form"):
        cluster_form("DROP TABLE sms.replies", CLUSTER)
    with pytest.raises(ClusterError, match="not a cluster name"):
        cluster_form("CREATE DATABASE IF NOT EXISTS sms", "c`; DROP DATABASE sms; --")


def test_unset_the_statements_are_the_files_own() -> None:
    for statement in SINGLE:
        assert ddl(statement, None) == [statement]
    assert Warehouse("chdb:///nowhere").cluster is None


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).sms_clickhouse_cluster is None
    monkeypatch.setenv("SMS_CLICKHOUSE_CLUSTER", CLUSTER)
    monkeypatch.setenv("CLICKHOUSE_URL", "http://clickhouse:8123")
    assert Settings(_env_file=None).sms_clickhouse_cluster == CLUSTER
    monkeypatch.delenv("CLICKHOUSE_URL")
    with pytest.raises(ValidationError, match="needs a ClickHouse server"):
        Settings(_env_file=None)
    monkeypatch.setenv("CLICKHOUSE_URL", "http://clickhouse:8123")
    monkeypatch.setenv("SMS_CLICKHOUSE_CLUSTER", "a b")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
