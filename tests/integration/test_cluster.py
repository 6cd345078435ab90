"""The warehouse's cluster form (SMS_CLICKHOUSE_CLUSTER, sinks/cluster.py): every statement of every
migration, view, retention and dictionary file passes ClickHouse's own parser in its cluster form, runs
ON CLUSTER, replicates every MergeTree, and puts every data table behind a Distributed table with the
sharding key intended here; unset, the statements are the files' own. No real cluster runs here (no
Keeper, one machine): ON CLUSTER and the Replicated engines are checked by the parser only; the rest
of the schema runs in chDB on a cluster whose replicas are the test process itself (see below)."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from sms_analytics.sinks import cluster
from sms_analytics.sinks.cluster import cluster_form
from sms_analytics.sinks.warehouse import Warehouse, migrations, statements

CLUSTER = "sms_cluster"
FILLS = {"{source_auth}": " USER 'sms' PASSWORD 'secret'", "{expire_after_seconds}": "259200",
         "{maturation_seconds}": "10, 30, 60", "{message_days}": "90", "{rollup_days}": "730"}
MESSAGE_KEY = "cityHash64(provider, message_id, phone_hash)"
# What each data table is sharded by, written out here (not read from sinks/cluster.py) so that a changed
# key fails this test until it is looked at again.
INTENDED_KEYS = {
    "message_parts": MESSAGE_KEY,
    "delivery_ingest": MESSAGE_KEY,
    "delivery_ingest_raw": MESSAGE_KEY,
    "conversions": MESSAGE_KEY,
    "replies": "cityHash64(provider, reply_id)",
    "rollup_minute_raw": "cityHash64(minute)",
    "rollup_error_minute_raw": "cityHash64(minute)",
    "undelivered_messages_raw": "cityHash64(minute)",
    "rollup_level_raw": "cityHash64(bucket)",
    "rollup_level_generations": "cityHash64(bucket)",
    "provider_stats": "cityHash64(provider, app_id, hour)",
    "provider_balance": "cityHash64(provider, account, at)",
    "alerts": "cityHash64(rule, key, started_at, state, at)",
}
ON_EVERY_NODE = {"schema_migrations", "error_codes", "error_code_lookup", "template_names", "templates", "signs"}
SCHEMA_MIGRATIONS = ("CREATE TABLE IF NOT EXISTS sms.schema_migrations (version String, applied_at DateTime64(3, 'UTC') "
                     "DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version")


def _files() -> list[tuple[str, str]]:
    """(name, text) of every file of statements the warehouse runs, its placeholders filled in."""
    out = [(f"migrations/{version}.sql", text) for version, text in migrations()]
    for name in ("views.sql", "retention.sql", "dictionaries.sql"):
        out.append((name, (resources.files("sms_analytics.sinks") / name).read_text(encoding="utf-8")))
    filled = []
    for name, text in out:
        for placeholder, value in FILLS.items():
            text = text.replace(placeholder, value)
        filled.append((name, text))
    return filled


FILES = _files()
SINGLE = [s for _, text in FILES for s in statements(text)] + ["CREATE DATABASE IF NOT EXISTS sms", SCHEMA_MIGRATIONS]
CLUSTERED = [c for s in SINGLE for c in cluster_form(s, CLUSTER)]


# chDB in a process of its own, asked one query a line: a test session may already hold a chDB path,
# and a process opens one (the in-memory engine included).
_ENGINE_LOOP = """
import json, sys, chdb
for line in sys.stdin:
    try:
        answer = {"data": chdb.query(json.loads(line), "TSVRaw").data()}
    except Exception as exc:
        answer = {"error": str(exc)}
    print(json.dumps(answer), flush=True)
"""
_engine: subprocess.Popen[str] | None = None


def _chdb(sql: str) -> str:
    """What chDB answers to `sql` (TSVRaw), from its own process."""
    global _engine
    if _engine is None or _engine.poll() is not None:
        _engine = subprocess.Popen([sys.executable, "-u", "-c", _ENGINE_LOOP], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
    assert _engine.stdin is not None and _engine.stdout is not None
    _engine.stdin.write(json.dumps(sql) + "\n")
    _engine.stdin.flush()
    answer = json.loads(_engine.stdout.readline())
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return str(answer["data"])


@functools.cache
def _formatted(sql: str) -> str:
    """The statement as ClickHouse's parser gives it back, on one line (chDB formatQuerySingleLine)."""
    literal = sql.replace("\\", "\\\\").replace("'", "\\'")
    return _chdb(f"SELECT formatQuerySingleLine('{literal}')").strip()


def _created(statements_: list[str]) -> dict[str, str]:
    """Table name (without `sms.`) -> its CREATE TABLE statement, as formatted by ClickHouse."""
    out = {}
    for sql in statements_:
        match = re.match(r"CREATE TABLE (?:IF NOT EXISTS )?sms\.(\w+)", sql)
        if match:
            out[match[1]] = _formatted(sql)
    return out


@pytest.mark.parametrize("name,text", FILES, ids=[name for name, _ in FILES])
def test_every_cluster_statement_parses_and_runs_on_the_cluster(name: str, text: str) -> None:
    for statement in statements(text):
        for sql in cluster_form(statement, CLUSTER):
            formatted = _formatted(sql)  # raises on a syntax error
            assert f"ON CLUSTER {CLUSTER}" in formatted, sql


def test_every_merge_tree_is_replicated_and_every_data_table_is_distributed_by_its_key() -> None:
    single, clustered = _created(SINGLE), _created(CLUSTERED)
    assert set(single) == set(INTENDED_KEYS) | ON_EVERY_NODE  # a new table is placed here deliberately
    for name, create in single.items():
        engine = re.search(r"ENGINE = `?(\w+)", create)[1]
        if name in ON_EVERY_NODE:
            assert f"sms.{name}_local" not in clustered
            local = clustered[name]
            assert f"ENGINE = Replicated{engine}('/clickhouse/tables/all/{{database}}/{{table}}', '{{shard}}-{{replica}}'" \
                in local
            continue
        local, distributed = clustered[f"{name}_local"], clustered[name]
        if engine == "Null":
            assert "ENGINE = `Null`" in local
        else:
            assert f"ENGINE = Replicated{engine}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}'" \
                in local
        assert distributed.endswith(f"AS sms.{name}_local ENGINE = Distributed('{CLUSTER}', 'sms', '{name}_local', "
                                    f"{INTENDED_KEYS[name]})"), distributed
    engines = [re.search(r"ENGINE = `?(\w+)", c)[1] for c in clustered.values()]
    assert not [e for e in engines if e.endswith("MergeTree") and not e.startswith("Replicated")]


def _order_by(create: str) -> set[str]:
    return set(re.search(r"ORDER BY \(?([\w, ]+)\)?", create)[1].replace(" ", "").split(","))


def _version(create: str) -> str | None:
    match = re.search(r"ENGINE = \w*ReplacingMergeTree\((\w+)\)", create)
    return match[1] if match else None


def test_every_sharding_key_keeps_what_a_merge_folds_on_one_shard() -> None:
    """A sharding key made of ORDER BY columns (never the version) puts all rows a merge or FINAL folds
    together on one shard; the ingest tables use the key of the parts table they feed."""
    single = _created(SINGLE)
    for name, key in INTENDED_KEYS.items():
        columns = set(re.fullmatch(r"cityHash64\(([\w, ]+)\)", key)[1].replace(" ", "").split(","))
        folded_in = "message_parts" if name.startswith("delivery_ingest") else name
        assert columns <= _order_by(single[folded_in]), (name, key)
        assert _version(single[folded_in]) not in columns
    # the views' newest-generation filters: the rows of a minute (or bucket) with their generations
    assert INTENDED_KEYS["rollup_level_raw"] == INTENDED_KEYS["rollup_level_generations"]


def test_the_ingest_views_write_the_local_parts_from_the_local_null_tables() -> None:
    views = [c for c in CLUSTERED if c.startswith("CREATE MATERIALIZED VIEW")]
    assert len(views) == 5  # 0008's two, 0013's conversions, 0014's (0008's again with province and city)
    sources = ("delivery_ingest", "delivery_ingest_raw", "conversions", "delivery_ingest", "delivery_ingest_raw")
    for sql, source in zip(views, sources, strict=True):
        formatted = _formatted(sql)
        assert f" ON CLUSTER {CLUSTER} TO sms.message_parts_local AS SELECT" in formatted
        assert formatted.split(" WHERE ")[0].endswith(f"FROM sms.{source}_local")  # conversions: sharded alike


def test_a_dropped_view_is_dropped_on_every_node() -> None:
    drops = [c for c in CLUSTERED if c.startswith("DROP VIEW")]
    assert drops == [f"DROP VIEW IF EXISTS sms.{name} ON CLUSTER `{CLUSTER}`"
                     for name in ("delivery_ingest_mv", "delivery_ingest_raw_mv")]
    assert all(_formatted(d).startswith("DROP VIEW IF EXISTS sms.") for d in drops)


def test_views_read_the_distributed_tables_and_filter_generations_on_each_shard() -> None:
    views = {re.match(r"CREATE OR REPLACE VIEW sms\.(\w+)", c)[1]: _formatted(c) for c in CLUSTERED
             if c.startswith("CREATE OR REPLACE VIEW")}
    assert "FROM sms.message_parts FINAL" in views["messages"]
    for view, table in (("rollup_minute", "rollup_minute_raw"), ("rollup_error_minute", "rollup_error_minute_raw"),
                        ("undelivered_messages", "undelivered_messages_raw")):
        assert f"FROM sms.{table} FINAL" in views[view]
        assert f"max(generation) FROM sms.{table}_local GROUP BY minute" in views[view]
    assert "FROM sms.rollup_level_generations_local GROUP BY grain, level, bucket" in views["rollup_level"]
    local_reads = {view for view, sql in views.items() if "_local" in sql}
    assert local_reads == {"rollup_minute", "rollup_error_minute", "undelivered_messages", "rollup_level"}


def test_the_session_and_table_settings_exist_in_clickhouse() -> None:
    names = ", ".join(f"'{name}'" for name in cluster.SESSION_SETTINGS)
    known = _chdb(f"SELECT name FROM system.settings WHERE name IN ({names})").split()
    assert sorted(known) == sorted(cluster.SESSION_SETTINGS)
    assert _chdb("SELECT count() FROM system.merge_tree_settings WHERE name = 'replicated_deduplication_window'"
                 ).strip() == "1"
    parts = _created(CLUSTERED)["message_parts_local"]
    assert "SETTINGS replicated_deduplication_window = 10000" in parts and "non_replicated" not in parts


def test_dictionary_reloads_reach_every_node() -> None:
    for system, expected in (
            ("SYSTEM SYNC REPLICA sms.error_code_lookup", "SYSTEM SYNC REPLICA ON CLUSTER sms_cluster sms.error_code_lookup"),
            ("SYSTEM RELOAD DICTIONARY sms.template_name_dict",
             "SYSTEM RELOAD DICTIONARY ON CLUSTER sms_cluster sms.template_name_dict")):
        (sql,) = cluster_form(system, CLUSTER)
        assert _formatted(sql) == expected
    clustered = Warehouse("http://clickhouse:8123", CLUSTER)
    assert clustered.reload_token() != clustered.reload_token()  # a reload is never a repeat of the last one
    assert Warehouse("chdb:///nowhere").reload_token() is None  # one server: the inserts as before


# A real ClickHouse (chDB) given a cluster whose replicas are this very process (chDB takes a server
# config file): the cluster's Distributed tables, materialized views, views and dictionaries run for real
# (reads, inserts through the Distributed tables with the sink's token, the rollup recompute). What it
# cannot run: ON CLUSTER (distributed DDL needs Keeper) and Replicated engines (Keeper), so each cluster
# statement runs without its ON CLUSTER clause and with its Replicated engine's plain form; the rest of
# the statement (names, Distributed tables and keys, local tables) is as generated. Nor two real shards:
# with one shard, ClickHouse runs a Distributed query as a local one; with two shards that are both this
# process (localhost and 127.0.0.1), every row is read twice, but the queries are planned as on two
# shards, which shows whether a server accepts them (a Distributed table in an IN subquery is refused
# under the server's default distributed_product_mode, 'deny').
SHARD = '<shard><internal_replication>true</internal_replication><replica><host>{}</host><port>9000</port></replica></shard>'


def _cluster_config(hosts: tuple[str, ...]) -> str:
    shards = "".join(SHARD.format(host) for host in hosts)
    return (f"<clickhouse><tcp_port>9000</tcp_port><remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>"
            "<macros><shard>01</shard><replica>r1</replica></macros></clickhouse>")


CLUSTER_SCRIPT = '''
import json, re, sys
from importlib import resources
from clickhouse_connect.driver._chdbclient import ChdbClient
from sms_analytics.model.events import Delivery, encode_deliveries
from sms_analytics.sinks import cluster
from sms_analytics.sinks.rollups import Rollups
from sms_analytics.sinks.warehouse import Warehouse, migrations, statements

path, config, name, shards = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def on_one_node(sql):
    sql = sql.replace(f" ON CLUSTER `{name}`", "")
    sql = re.sub(r"Replicated(\\w*MergeTree)\\('[^']*', '[^']*'(, )?", r"\\1(", sql)
    return sql.replace("replicated_deduplication_window", "non_replicated_deduplication_window")

w = Warehouse("chdb://" + path)
# the sessions' cluster settings, but this process is the shard's replica: reached in-process
w._client = ChdbClient(path=path, settings=dict(cluster.SESSION_SETTINGS, prefer_localhost_replica=1),
                       chdb_options={"config-file": config})
texts = [text for _, text in migrations()]
for file in ("views.sql", "retention.sql", "dictionaries.sql"):
    texts.append((resources.files("sms_analytics.sinks") / file).read_text(encoding="utf-8"))
fills = {"{source_auth}": "", "{expire_after_seconds}": "3600", "{maturation_seconds}": "10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400, 259200",
         "{message_days}": "3650", "{rollup_days}": "3651"}
ran = 0
for text in ["CREATE DATABASE IF NOT EXISTS sms"] + texts:
    for placeholder, value in fills.items():
        text = text.replace(placeholder, value)
    for statement in statements(text):
        for sql in cluster.cluster_form(statement, name):
            w.command(on_one_node(sql))
            ran += 1

base = dict(provider="aliyun", phone="+8613900000001", phone_hash="h1", phone_masked="139****0001",
            carrier="mobile", country_code="86")
minute_ms = 1_700_000_040_000
send = Delivery(**base, message_id="m1", has_send=True, template="T", sign="S", segments=1,
                sent_at_ms=minute_ms + 1000, updated_at_ms=1)
ok = Delivery(**base, message_id="m1", status="delivered", stage="receipt", outcome_at_ms=minute_ms + 9000,
              error_code="DELIVRD", failure_category="delivered", receipt_ids=["r1"], updated_at_ms=2)
for body, token in ((encode_deliveries([send]), "batch-1"), (encode_deliveries([ok]), "batch-2")):
    for _ in range(3):  # a retried batch: the same token through the Distributed table and the view
        w.insert_json("sms.delivery_ingest", body, token=token)
rollups = Rollups(w, 3600)
for _ in range(2):  # two recomputes of the minute: the views keep the newest generation
    rollups.dirty.add(minute_ms // 60_000 * 60)
    rollups.recompute()
q = lambda sql: [list(r) for r in w.query(sql)[1]]
if shards > 1:  # what a client with the server's default settings (Grafana) may read, and the recompute under them
    plain = ChdbClient(path=path, chdb_options={"config-file": config})
    views = [r[0] for r in q("SELECT name FROM system.tables WHERE database = 'sms' AND engine = 'View' ORDER BY name")]
    reads = {view: f"SELECT count() FROM sms.{view}" for view in views}
    # "Message lookup" (dashboards/build.py): a number's messages span shards, found by an IN over the parts
    reads["lookup"] = ("SELECT message_id, status FROM sms.messages WHERE phone_hash IN ("
                       "SELECT phone_hash FROM sms.message_parts WHERE phone_masked = '139****0001' UNION ALL "
                       "SELECT phone_hash FROM sms.message_parts WHERE message_id = '139****0001') "
                       "AND (phone_masked = '139****0001' OR message_id = '139****0001') "
                       "SETTINGS optimize_move_to_prewhere_if_final = 1")
    refused = {}
    for read, sql in reads.items():
        try:
            plain.query(sql)
        except Exception as exc:
            refused[read] = str(exc)[:200]
    print(json.dumps({"views": views, "refused": refused}))
    sys.exit(0)
print(json.dumps({
    "ran": ran,
    "parts": q("SELECT count() FROM sms.message_parts_local"),
    "messages": q("SELECT message_id, toString(status), latency_ms FROM sms.messages"),
    "minute": q("SELECT sent, delivered FROM sms.rollup_minute"),
    "hour": q("SELECT sent, delivered FROM sms.rollup_level WHERE grain = 'provider_carrier' AND level = 3600"),
    "generations": q("SELECT count(DISTINCT generation) FROM sms.rollup_minute_raw"),
    "engines": q("SELECT name, engine FROM system.tables WHERE database = 'sms' AND name IN "
                 "('message_parts', 'message_parts_local', 'delivery_ingest', 'rollup_minute_raw') ORDER BY name"),
    "stored_at": q("SELECT count() FROM system.columns WHERE database = 'sms' AND table = 'message_parts' "
                   "AND name = 'stored_at'"),
    "ttl": q("SELECT engine_full LIKE '%TTL%' FROM system.tables WHERE database = 'sms' AND name = 'replies_local'"),
}))
'''


def _run_on_cluster(tmp_path: Path, hosts: tuple[str, ...]) -> dict[str, Any]:
    (tmp_path / "config.xml").write_text(_cluster_config(hosts))
    done = subprocess.run(check=False, args=[sys.executable, "-c", CLUSTER_SCRIPT, str(tmp_path / "warehouse"),
                           str(tmp_path / "config.xml"), CLUSTER, str(len(hosts))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cluster_schema_runs_on_a_one_shard_cluster(tmp_path: Path) -> None:
    seen = _run_on_cluster(tmp_path, ("localhost",))
    assert seen["ran"] == len(CLUSTERED) - 1  # every statement of the files (not schema_migrations' own)
    assert seen["parts"] == [[2]]  # two batches, each written once however often retried
    assert seen["messages"] == [["m1", "delivered", 8000]]
    assert seen["minute"] == [[1, 1]] and seen["hour"] == [[1, 1]]
    assert seen["generations"] == [[2]]
    assert seen["engines"] == [["delivery_ingest", "Distributed"], ["message_parts", "Distributed"],
                               ["message_parts_local", "AggregatingMergeTree"], ["rollup_minute_raw", "Distributed"]]
    assert seen["stored_at"] == [[1]] and seen["ttl"] == [[1]]


def test_every_view_is_accepted_on_two_shards(tmp_path: Path) -> None:
    """Grafana reads every view, and "Message lookup", with the server's default settings: a view whose IN subquery named a
    Distributed table would be refused ('deny'); the views' generation filters read the _local tables.
    The rollup recompute ran on the two shards too (with the sessions' settings) before this check."""
    seen = _run_on_cluster(tmp_path, ("localhost", "127.0.0.1"))
    assert len(seen["views"]) == len([c for c in CLUSTERED if c.startswith("CREATE OR REPLACE VIEW")]) == 11
    assert seen["refused"] == {}
