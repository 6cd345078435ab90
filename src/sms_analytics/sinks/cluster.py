"""The warehouse on a ClickHouse cluster (SMS_CLICKHOUSE_CLUSTER): each single-node statement of the
migrations, views.sql, retention.sql and dictionaries.sql turned into its cluster form, here, one
statement at a time. There is no second copy of any migration; Warehouse runs a statement as it is
when no cluster is set, and `cluster_form(statement, cluster)` when one is.

Placement of every table (a table with no placement is refused, so a new migration cannot skip it):
- SHARDING: the data tables. `sms.<name>_local` on every node (ON CLUSTER), a Replicated engine whose
  Keeper path holds the {shard} macro: the replicas of one shard share it. `sms.<name>` becomes a
  Distributed table over them, so every query in the code (and Grafana's) keeps its table names. The
  sharding key puts every row that a merge must fold, or FINAL must see, on one shard:
  - message_parts (and the ingest tables that feed it): the message key. A message is one
    (provider, message_id, phone): the Kafka key (model/topics.py:message_key) and the ORDER BY
    (provider, message_id, phone_hash) of its parts. phone_hash belongs in the key: every part of a
    message carries it (it is part of the merge key), and a batch send (one Aliyun BizId, thousands of
    numbers) spreads over the shards instead of landing on one.
  - replies, provider_stats, provider_balance, alerts: a hash of their ORDER BY columns (the version
    column of a ReplacingMergeTree is not among them), so the versions of a row meet.
  - the rollup tables: their minute (or bucket). Not all ORDER BY columns: the views keep "the newest
    generation of each minute" with `(minute, generation) IN (SELECT minute, max(generation) … GROUP
    BY minute)`, which is only right when every row of a minute (and its sentinel) is on one shard. The
    minute-bucket tables and rollup_level_raw / rollup_level_generations use the same function of the
    same DateTime value, so a minute's rows of every table share a shard. Hashed: a minute is a
    multiple of 60, and Distributed takes the key modulo the shards' weights (2, 3, 4, 5, 6 shards
    would all receive every minute on one shard).
- EVERY_NODE: the small reference tables the dictionaries read locally (error_codes,
  error_code_lookup, template_names, and the metadata feeds' templates and signs) and
  schema_migrations: one replica on every node, a Keeper path
  without {shard}, no Distributed. The replica name is '{shard}-{replica}', unique over the cluster
  even where {replica} is only unique within a shard.
- Null tables (the ingest entry tables of migrations/0008) are not replicated (they store nothing):
  `<name>_local` on each node with its materialized views (ON CLUSTER, reading the local Null table
  and writing the local parts table), and a Distributed `<name>` sharded by the message key, which the
  sink inserts into.

Keeper paths, explicit rather than the server's default_replica_path: '/clickhouse/tables/{shard}/
{database}/{table}' (sharded) and '/clickhouse/tables/all/{database}/{table}' (every node). They
depend on no server setting and no Atomic-database UUID, read plainly in Keeper, and {database} and
{table} are fixed when a table is created (a rename keeps its path). What the nodes must define:
macros {shard} and {replica}, the cluster in remote_servers with internal_replication = true.

Views read the Distributed tables. An `IN (SELECT … FROM sms.<table>)` subquery of a view over a
Distributed table reads the subquery's `_local` table instead, on each shard, which is exact only
when both tables are sharded by the same key (checked here; refused otherwise): a view must work for
any client (Grafana) whatever its distributed_product_mode (the server's default, 'deny', refuses a
Distributed table in such a subquery).

Insert exactness: SESSION_SETTINGS, for the warehouse's own sessions. distributed_foreground_insert:
an insert into a Distributed table returns once each shard's block is in that shard's replicated local
table, where the insert_deduplication_token of the sink (sinks/writer.py) deduplicates a retried batch
per shard (each shard receives the same rows under the same token on every retry), through the
materialized views too (deduplicate_blocks_in_dependent_materialized_views, Warehouse.insert_json).
A background (asynchronous) Distributed insert would queue the block on the initiator's disk and
acknowledge it before any shard has it: a retry could not be recognized, and the sink would commit
Kafka offsets for rows not yet in the warehouse. Beyond deduplication, every table's merge folds
duplicates (AggregatingMergeTree of idempotent functions, ReplacingMergeTree), so a replay after the
deduplication window is still exact.
"""

from __future__ import annotations

import re

DATABASE = "sms"
SHARD_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
SHARD_REPLICA = "{replica}"
EVERY_NODE_PATH = "/clickhouse/tables/all/{database}/{table}"
EVERY_NODE_REPLICA = "{shard}-{replica}"
LOCAL_SUFFIX = "_local"

MESSAGE_KEY = "cityHash64(provider, message_id, phone_hash)"
MINUTE_KEY = "cityHash64(minute)"
BUCKET_KEY = "cityHash64(bucket)"
# The data tables and their sharding keys (see the module docstring).
SHARDING: dict[str, str] = {
    "message_parts": MESSAGE_KEY,
    "delivery_ingest": MESSAGE_KEY,
    "delivery_ingest_raw": MESSAGE_KEY,
    "conversions": MESSAGE_KEY,  # its materialized view writes into sms.message_parts: the same shard
    "replies": "cityHash64(provider, reply_id)",
    "rollup_minute_raw": MINUTE_KEY,
    "rollup_error_minute_raw": MINUTE_KEY,
    "undelivered_messages_raw": MINUTE_KEY,
    "rollup_level_raw": BUCKET_KEY,
    "rollup_level_generations": BUCKET_KEY,
    "provider_stats": "cityHash64(provider, app_id, hour)",
    "provider_balance": "cityHash64(provider, account, at)",
    "alerts": "cityHash64(rule, key, started_at, state, at)",
}
# Replicated in full on every node: the dictionaries' sources and the migrations' record.
EVERY_NODE = frozenset({"schema_migrations", "error_codes", "error_code_lookup", "template_names", "templates",
                        "signs"})
# The engines this module knows how to replicate (Replicated<engine>(path, replica, <its arguments>)).
MERGE_TREES = frozenset({"MergeTree", "ReplacingMergeTree", "AggregatingMergeTree", "SummingMergeTree",
                         "CollapsingMergeTree", "VersionedCollapsingMergeTree"})
NOT_REPLICATED = frozenset({"Null"})  # stores nothing: each node's own table

# The settings of the warehouse's sessions on a cluster (Warehouse.open).
#   distributed_foreground_insert: see "Insert exactness" above.
#   distributed_product_mode 'global': a query's IN / JOIN subquery over a Distributed table runs once
#     and its result goes to every shard (the read paths' own SQL, such as "Message lookup", whose number
#     spans shards); exact whatever the sharding, where the server's default 'deny' refuses the query.
#     (26.9 plans the rollup recompute's key filter, an IN over sms.message_parts under the view
#     sms.messages, that way by itself: tests/test_cluster.py runs it on two shards.)
#   load_balancing 'in_order', prefer_localhost_replica 0: every session, on whichever node, reads and
#     writes the same replica of each shard (the first healthy one in the cluster's order), so a read
#     sees every write acknowledged before it, without waiting for replication: the rollup recompute
#     reads the parts just written, and its coarser levels the finer ones it has just written
#     (sinks/rollups.py). A node's own shard is reached over the network like the others.
SESSION_SETTINGS: dict[str, str | int] = {
    "distributed_foreground_insert": 1,
    "distributed_product_mode": "global",
    "load_balancing": "in_order",
    "prefer_localhost_replica": 0,
}

_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_CREATE_DATABASE = re.compile(r"CREATE\s+DATABASE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?sms\.(\w+)\s+(.*)", re.IGNORECASE | re.DOTALL)
_CREATE_MV = re.compile(r"CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?sms\.(\w+)\s+TO\s+sms\.(\w+)\s+AS\s+(.*)",
                        re.IGNORECASE | re.DOTALL)
_CREATE_VIEW = re.compile(r"CREATE\s+OR\s+REPLACE\s+VIEW\s+sms\.(\w+)\s+AS\s+(.*)", re.IGNORECASE | re.DOTALL)
_CREATE_DICTIONARY = re.compile(r"CREATE\s+OR\s+REPLACE\s+DICTIONARY\s+sms\.(\w+)\s+(.*)", re.IGNORECASE | re.DOTALL)
_SYSTEM = re.compile(r"SYSTEM\s+(RELOAD\s+DICTIONARY|SYNC\s+REPLICA)\s+(sms\.\w+)", re.IGNORECASE)
_DROP_VIEW = re.compile(r"DROP\s+VIEW\s+(IF\s+EXISTS\s+)?sms\.(\w+)", re.IGNORECASE)
_ALTER = re.compile(r"ALTER\s+TABLE\s+sms\.(\w+)\s+(.*)", re.IGNORECASE | re.DOTALL)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(\w+)(?:\s*\(([^()]*)\))?", re.IGNORECASE)
_AS_TABLE = re.compile(r"^AS\s+sms\.(\w+)\s+", re.IGNORECASE)
_TABLE_NAME = re.compile(r"\bsms\.(\w+)\b")
_IN_SUBQUERY = re.compile(r"\bIN\s*\(\s*SELECT\b.*?\bFROM\s+sms\.(\w+)\b", re.IGNORECASE | re.DOTALL)
_FROM = re.compile(r"\bFROM\s+sms\.(\w+)\b", re.IGNORECASE)
_DICTIONARY_SOURCE = re.compile(r"\bTABLE\s+'(\w+)'|\bFROM\s+sms\.(\w+)", re.IGNORECASE)  # a TABLE or a QUERY
# ALTER commands that change the columns: the Distributed table gets them too.
_COLUMN_COMMAND = re.compile(r"^(ADD|DROP|MODIFY|RENAME)\s+COLUMN\b", re.IGNORECASE)
# A sorting key changed with the column it adds (migrations/0015): the local table's; a Distributed table has none.
_MODIFY_ORDER_BY = re.compile(r",\s*MODIFY\s+ORDER\s+BY\s*\(.*\)\s*$", re.IGNORECASE | re.DOTALL)


class ClusterError(ValueError):
    """A statement, engine or table the cluster form does not know: refused rather than left single-node."""


def check_cluster_name(cluster: str) -> str:
    if not _CLUSTER_NAME.fullmatch(cluster):
        raise ClusterError(f"not a cluster name: {cluster!r} (letters, digits, '_', '.', '-')")
    return cluster


def local_name(table: str) -> str:
    """The table holding a data table's rows on each node: `sms.x` -> `sms.x_local` for a sharded
    table, the table itself otherwise."""
    name = table.removeprefix(f"{DATABASE}.")
    return f"{DATABASE}.{name}{LOCAL_SUFFIX}" if name in SHARDING else table


def cluster_form(statement: str, cluster: str) -> list[str]:
    """The statements that do on a cluster what `statement` does on one server."""
    on = f"ON CLUSTER `{check_cluster_name(cluster)}`"
    text = statement.strip()
    if match := _CREATE_DATABASE.fullmatch(text):
        return [f"CREATE DATABASE {match[1] or ''}{match[2]} {on}"]
    if match := _CREATE_TABLE.fullmatch(text):
        return _create_table(match[1] or "", match[2], match[3], cluster, on)
    if match := _CREATE_MV.fullmatch(text):
        return [_materialized_view(match[1] or "", match[2], match[3], match[4], on)]
    if match := _CREATE_VIEW.fullmatch(text):
        return [f"CREATE OR REPLACE VIEW sms.{match[1]} {on} AS {_local_subqueries(match[1], match[2])}"]
    if match := _CREATE_DICTIONARY.fullmatch(text):
        return [_dictionary(match[1], match[2], on)]
    if match := _DROP_VIEW.fullmatch(text):  # a view or materialized view: same name on every node
        return [f"DROP VIEW {match[1] or ''}sms.{match[2]} {on}"]
    if match := _ALTER.fullmatch(text):
        return _alter(match[1], match[2], on)
    if match := _SYSTEM.fullmatch(text):  # every node's dictionary, every node's replica
        return [f"SYSTEM {match[1]} {on} {local_name(match[2])}"]
    raise ClusterError(f"no cluster form for this statement: {text[:120]}")


def _create_table(if_not_exists: str, name: str, body: str, cluster: str, on: str) -> list[str]:
    if name in SHARDING:
        local = f"{name}{LOCAL_SUFFIX}"
        body = _AS_TABLE.sub(lambda m: f"AS {local_name(m[1])} ", body)
        create = f"CREATE TABLE {if_not_exists}sms.{local} {on} {_replicated(name, body, SHARD_PATH, SHARD_REPLICA)}"
        distributed = (f"CREATE TABLE {if_not_exists}sms.{name} {on} AS sms.{local} "
                       f"ENGINE = Distributed('{cluster}', '{DATABASE}', '{local}', {SHARDING[name]})")
        return [create, distributed]
    if name in EVERY_NODE:
        replicated = _replicated(name, body, EVERY_NODE_PATH, EVERY_NODE_REPLICA)
        return [f"CREATE TABLE {if_not_exists}sms.{name} {on} {replicated}"]
    raise ClusterError(f"sms.{name} has no place on a cluster: add it to SHARDING (with its sharding key) or "
                       "EVERY_NODE in sinks/cluster.py")


def _replicated(name: str, body: str, path: str, replica: str) -> str:
    """A CREATE TABLE's body with its engine replicated (or kept, for an engine that stores nothing)."""
    match = _ENGINE.search(body)
    if match is None:
        raise ClusterError(f"sms.{name}: no ENGINE clause the cluster form can read")
    engine, args = match[1], (match[2] or "").strip()
    if engine in NOT_REPLICATED:
        return body
    if engine not in MERGE_TREES:
        raise ClusterError(f"sms.{name}: engine {engine} has no known replicated form "
                           f"(known: {', '.join(sorted(MERGE_TREES | NOT_REPLICATED))})")
    params = ", ".join([f"'{path}'", f"'{replica}'", *([args] if args else [])])
    body = body[:match.start()] + f"ENGINE = Replicated{engine}({params})" + body[match.end():]
    # The deduplication window of a replicated table is replicated_deduplication_window.
    return re.sub(r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", body)


def _materialized_view(if_not_exists: str, name: str, target: str, select: str, on: str) -> str:
    """A materialized view on every node, from the local source table into the local target table."""
    for table in {target, *_TABLE_NAME.findall(select)}:
        if table not in SHARDING and table not in EVERY_NODE:
            raise ClusterError(f"materialized view sms.{name}: sms.{table} has no place on a cluster")
    select = _TABLE_NAME.sub(lambda m: local_name(f"sms.{m[1]}"), select)
    return f"CREATE MATERIALIZED VIEW {if_not_exists}sms.{name} {on} TO {local_name(f'sms.{target}')} AS {select}"


def _local_subqueries(view: str, select: str) -> str:
    """A view's `IN (SELECT … FROM sms.<sharded>)` subqueries read the `_local` table, on each shard,
    when the table the IN filters (the nearest FROM before it) is sharded by the same key."""
    out, done = [], 0
    for match in _IN_SUBQUERY.finditer(select):
        inner = match[1]
        if inner not in SHARDING:
            continue
        outer = [m[1] for m in _FROM.finditer(select, 0, match.start())]
        if not outer or SHARDING.get(outer[-1]) != SHARDING[inner]:
            raise ClusterError(
                f"view sms.{view}: an IN subquery over sms.{inner} filters "
                f"{'sms.' + outer[-1] if outer else 'no table'}, not sharded by the same key "
                f"({SHARDING[inner]}): its rows are not all on one shard")
        out.append(select[done:match.start(1)] + inner + LOCAL_SUFFIX)
        done = match.end(1)
    return "".join(out) + select[done:]


def _dictionary(name: str, body: str, on: str) -> str:
    for table in (t or q for t, q in _DICTIONARY_SOURCE.findall(body)):
        if table not in EVERY_NODE:
            raise ClusterError(f"dictionary sms.{name} reads sms.{table}, which is not on every node: each node's "
                               "dictionary reads its local table")
    return f"CREATE OR REPLACE DICTIONARY sms.{name} {on} {body}"


def _alter(name: str, commands: str, on: str) -> list[str]:
    if name in EVERY_NODE:
        return [f"ALTER TABLE sms.{name} {on} {commands}"]
    if name not in SHARDING:
        raise ClusterError(f"ALTER of sms.{name}, which has no place on a cluster")
    local = [f"ALTER TABLE sms.{name}{LOCAL_SUFFIX} {on} {commands}"]
    if _COLUMN_COMMAND.match(commands):
        columns = _MODIFY_ORDER_BY.sub("", commands)
        return [*local, f"ALTER TABLE sms.{name} {on} {columns}"]  # the Distributed table's columns too
    return local
