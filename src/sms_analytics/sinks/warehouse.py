"""ClickHouse through clickhouse-connect: chdb:///path (embedded, in-process) or http(s)://server.

One `Warehouse` per process. Calls are serialized by a lock (a chDB session is one engine) and
are blocking: async callers run them in a thread.

With a cluster (SMS_CLICKHOUSE_CLUSTER), every statement of the migrations, views, retention and
dictionaries runs in its cluster form (sinks/cluster.py) and the sessions carry
cluster.SESSION_SETTINGS; without one, the statements run exactly as the files give them.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import clickhouse_connect
import structlog

from sms_analytics.sinks import cluster as on_cluster

log = structlog.get_logger(__name__)

# The ages of sms.cohort_maturation (views.sql): delivered_within[i] counts the messages delivered within
# MATURATION_SECONDS[i] of the send. Here, where views.sql is filled in, so that rollups.py (which imports
# this module) can use it without an import back.
MATURATION_SECONDS = (10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400, 259200)

# The MergeTree tables without a TTL, and why (migrations/0010_retention.sql); every other table has one
# (sinks/retention.sql; tests/test_retention.py checks both).
NO_TTL = {
    "schema_migrations": "the record of applied migrations: a forgotten row re-runs its migration",
    "error_codes": "the error-code knowledge base, replaced whole when its version changes; no time column",
    "error_code_lookup": "the knowledge base as looked up, replaced with sms.error_codes; no time column",
    "template_names": "business names of templates, replaced whole at every start: a TTL on its load time "
                      "would empty the names under a process that runs longer than the TTL",
    "templates": "the providers' templates as last described by their metadata APIs: one row per template, "
                 "replaced by the next pull, not a time series",
    "signs": "the providers' signs as last described by their metadata APIs: one row per sign, replaced by "
             "the next pull, not a time series",
}
_MODIFY_TTL = re.compile(r"ALTER TABLE (sms\.\w+) MODIFY TTL (.+)", re.S)
_TTL_OF = re.compile(r"\sTTL\s(.+?)(?:\sSETTINGS\s.*)?$", re.S)

_READ_ONLY = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)


class WarehouseBusy(RuntimeError):
    """The chDB path is open in another process: its lock is held."""


_LOCKED = "Another server instance"  # chDB's words when the path's status file is locked


@contextmanager
def _native_stderr() -> Iterator[Callable[[], str]]:
    """What native code writes to the process's stderr (fd 2) meanwhile, passed on afterwards, but for
    chDB's lock message, which WarehouseBusy replaces."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        def said() -> str:
            sink.seek(0)
            return sink.read().decode("utf-8", "replace")

        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            text = said()
            if _LOCKED not in text:
                sys.stderr.write(text)


class NotReadOnly(ValueError):
    pass


def check_read_only(sql: str) -> str:
    """Refuse anything but one read statement (the server also runs it with readonly=2: no writes, no DDL)."""
    text = _strip_comments(sql).strip().rstrip(";").strip()
    if not text:
        raise NotReadOnly("empty statement")
    if ";" in _strip_literals(text):
        raise NotReadOnly("only one statement is allowed")
    if not _READ_ONLY.match(text):
        raise NotReadOnly("only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and EXISTS statements are allowed")
    return text


# Table functions a read path may use: they generate rows and read nothing outside the warehouse.
# Every other one (file, url, s3, remote, mysql, python, executable, dictionary, input, ...) could
# read the host's files (/proc/self/environ holds every secret), reach the network or run code.
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries",
                                  "primes", "values", "view", "null"})
# Ordinary functions that read the host's files.
UNSAFE_FUNCTIONS = frozenset({"file"})
# The dictionary functions (dictGet, dictHas, dictGetHierarchy, …) may read the warehouse's own
# dictionaries, named by a literal: a dictionary defined elsewhere on a server may have any source.
_OWN_DICTIONARY = re.compile(r"^'sms\.\w+'$")
_AST_LINE = re.compile(r"^( *)(\w+)(?: (\S+))?")


def unsafe_sources(ast: str) -> list[str]:
    """The table functions outside SAFE_TABLE_FUNCTIONS, the UNSAFE_FUNCTIONS, and the dictionaries
    outside the `sms` database, that a statement uses anywhere (subqueries, CTEs, joins, DESCRIBE),
    read from ClickHouse's own parse of it: the text of `EXPLAIN AST <statement>`, one node a line, a
    child indented one space under its parent."""
    found: list[str] = []
    parents: list[str] = []  # the node kind at each depth
    dictionary_at: list[tuple[int, str]] = []  # (depth of its first argument, function) awaiting it
    for line in ast.splitlines():
        match = _AST_LINE.match(line)
        if not match:
            continue
        depth, kind, name = len(match.group(1)), match.group(2), match.group(3) or ""
        del parents[depth:]
        parent = parents[-1] if parents else ""
        parents.append(kind)
        found.extend(_dictionary_names(dictionary_at, depth, kind, name))
        if kind != "Function":
            continue
        if parent == "TableExpression" and name not in SAFE_TABLE_FUNCTIONS:
            found.append(f"table function {name}")
        elif name in UNSAFE_FUNCTIONS:
            found.append(f"function {name}")
        elif name.startswith("dict"):
            dictionary_at.append((depth + 2, name))  # Function > ExpressionList > first argument
    found.extend(f"{function} without a dictionary name" for _, function in dictionary_at)
    return found


def _dictionary_names(awaiting: list[tuple[int, str]], depth: int, kind: str, name: str) -> list[str]:
    """Settle the dictionary functions in `awaiting` (depth of their first argument, function) that the
    AST node at `depth` answers: it is that first argument, or the function ended without one."""
    found = []
    while awaiting:
        at, function = awaiting[-1]
        if depth == at and not (kind == "Literal" and _OWN_DICTIONARY.match(name)):
            found.append(f"{function} of a dictionary outside sms ({name or kind})")
        elif depth <= at - 2:  # back at the function's own depth or above: it had no argument
            found.append(f"{function} without a dictionary name")
        elif depth != at:
            break
        awaiting.pop()
    return found


def _strip_comments(sql: str) -> str:
    """Blank `-- …` and `/* … */` comments outside string literals (what the engine ignores)."""
    return re.sub(r"'(?:[^'\\]|\\.)*'|--[^\n]*|/\*.*?\*/", lambda m: m.group(0) if m.group(0).startswith("'") else " ",
                  sql, flags=re.S)


def _strip_literals(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql)


def migrations() -> list[tuple[str, str]]:
    folder = resources.files("sms_analytics.sinks") / "migrations"
    files = sorted((f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), text) for name, text in files]


def statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def source_auth(url: str) -> str:
    """` USER '…' PASSWORD '…'` of a dictionary's CLICKHOUSE source: the credentials of a server URL
    (http://user:password@host:8123), or '' where it names none (chDB: no users; a server's `default`)."""
    parsed = urlparse(url)
    if parsed.scheme == "chdb" or not parsed.username:
        return ""
    user, password = unquote(parsed.username), unquote(parsed.password or "")
    return f" USER {_quote(user)} PASSWORD {_quote(password)}"


def _quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ddl(statement: str, cluster: str | None) -> list[str]:
    """What runs for one statement of the migrations, views, retention or dictionaries: the statement
    itself on one server, its cluster form (sinks/cluster.py) on a cluster."""
    return [statement] if cluster is None else on_cluster.cluster_form(statement, cluster)


class Warehouse:
    def __init__(self, url: str, cluster: str | None = None) -> None:
        self.url = url
        self.cluster = on_cluster.check_cluster_name(cluster) if cluster else None
        self._lock = threading.Lock()
        self._client: Any = None

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb:")

    def open(self) -> Warehouse:
        if not self.embedded:
            settings = dict(on_cluster.SESSION_SETTINGS) if self.cluster else None
            self._client = clickhouse_connect.get_client(dsn=self.url, settings=settings)
            return self
        path = self.url.removeprefix("chdb://")
        Path(path).mkdir(parents=True, exist_ok=True)
        with _native_stderr() as said:  # chDB writes why it failed there, not into its exception
            try:
                self._client = clickhouse_connect.get_client(dsn=self.url)
            except Exception as exc:
                if _LOCKED in said():
                    raise WarehouseBusy(f"{'/' + path.lstrip('/')} is open in another process (a chDB path is "
                                        "opened by one process at a time)") from exc
                raise
        return self

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("warehouse is not open")
        return self._client

    def migrate(self) -> list[str]:
        """Apply the versioned SQL files not yet applied; safe to run at every start."""
        with self._lock:
            self._ddl("CREATE DATABASE IF NOT EXISTS sms")
            self._ddl("CREATE TABLE IF NOT EXISTS sms.schema_migrations (version String, "
                      "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version")
            done = {r[0] for r in self.client.query("SELECT version FROM sms.schema_migrations FINAL").result_rows}
            applied = []
            for version, sql in migrations():
                if version in done:
                    continue
                for statement in statements(sql):
                    self._ddl(statement)
                self.client.insert("sms.schema_migrations", [[version]], column_names=["version"])
                applied.append(version)
        if applied:
            log.info("warehouse.migrated", versions=applied)
        self.apply_dictionaries()
        return applied

    def apply_dictionaries(self, signed_in_as: str | None = None) -> None:
        """(Re)create the dictionaries (dictionaries.sql), their source signed in with the credentials of
        `signed_in_as`, a warehouse URL: by default this warehouse's own."""
        text = (resources.files("sms_analytics.sinks") / "dictionaries.sql").read_text(encoding="utf-8")
        auth = source_auth(signed_in_as or self.url)
        with self._lock:
            for statement in statements(text):  # split before the credentials go in: they may hold a ';'
                self._ddl(statement.replace("{source_auth}", auth))

    def apply_views(self, expire_after_seconds: int) -> None:
        """(Re)create the views with the configured settings; they hold no data."""
        text = (resources.files("sms_analytics.sinks") / "views.sql").read_text(encoding="utf-8")
        text = text.replace("{expire_after_seconds}", str(int(expire_after_seconds)))
        text = text.replace("{maturation_seconds}", ", ".join(map(str, MATURATION_SECONDS)))
        with self._lock:
            for statement in statements(text):
                self._ddl(statement)

    def apply_retention(self, message_days: int, rollup_days: int) -> list[str]:
        """Give every table its TTL (sinks/retention.sql) where it differs from the table's; returns those
        tables. Safe and cheap at every start: an unchanged TTL is not touched. A changed one is set
        without rewriting the table (materialize_ttl_after_modify = 0); MATERIALIZE TTL then, in the
        background, only recomputes each part's TTL bounds (materialize_ttl_recalculate_only), and the
        background TTL merges (at most every merge_with_ttl_timeout, 4 h) delete what has expired."""
        text = (resources.files("sms_analytics.sinks") / "retention.sql").read_text(encoding="utf-8")
        text = text.replace("{message_days}", str(int(message_days))).replace("{rollup_days}", str(int(rollup_days)))
        wanted: dict[str, str] = {}
        for statement in statements(text):
            match = _MODIFY_TTL.fullmatch(statement)
            if match is None:
                raise ValueError(f"retention.sql: not an ALTER TABLE … MODIFY TTL: {statement[:80]}")
            wanted[match[1]] = " ".join(match[2].split())
        changed = []
        with self._lock:
            tables = {f"sms.{name}": engine for name, engine in self.client.query(
                "SELECT name, engine_full FROM system.tables WHERE database = 'sms'").result_rows}
            for table, ttl in wanted.items():
                stored_in = on_cluster.local_name(table) if self.cluster else table  # the table with the rows
                current = _TTL_OF.search(tables.get(stored_in, ""))
                if current is not None and self._same_expression(current[1], ttl):
                    continue
                self._ddl(f"ALTER TABLE {table} MODIFY SETTING materialize_ttl_recalculate_only = 1")
                self._ddl(f"ALTER TABLE {table} MODIFY TTL {ttl}", settings={"materialize_ttl_after_modify": 0})
                self._ddl(f"ALTER TABLE {table} MATERIALIZE TTL", settings={"mutations_sync": 0})
                changed.append(table)
        if changed:
            log.info("warehouse.retention", tables=changed, message_days=message_days, rollup_days=rollup_days)
        return changed

    def _ddl(self, statement: str, settings: dict[str, Any] | None = None) -> None:
        """Run one statement of the migrations, views, retention or dictionaries (its cluster form on a
        cluster); the caller holds the lock."""
        for sql in ddl(statement, self.cluster):
            self.client.command(sql, settings=settings)

    def _same_expression(self, a: str, b: str) -> bool:
        """Whether two expressions are the same as the server writes them (INTERVAL 1 DAY is toIntervalDay(1))."""
        if a == b:
            return True
        try:
            row = self.client.query("SELECT formatQuerySingleLine(concat('SELECT ', {a:String})) = "
                                    "formatQuerySingleLine(concat('SELECT ', {b:String}))",
                                    parameters={"a": a, "b": b}).result_rows
        except Exception:  # noqa: BLE001  (a server without formatQuery (before 23.10): set the TTL again)
            return False
        return bool(row[0][0])

    def insert_json(self, table: str, body: bytes, token: str | None = None) -> None:
        """Insert rows already in JSON (a JSON array of objects, JSONEachRow); fields the table
        lacks are skipped."""
        settings: dict[str, Any] = {"input_format_skip_unknown_fields": 1,
                                    "deduplicate_blocks_in_dependent_materialized_views": 1}
        if token:
            settings["insert_deduplication_token"] = token
        with self._lock:
            self.client.raw_insert(table, insert_block=body, fmt="JSONEachRow", settings=settings)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], token: str | None = None) -> None:
        settings = {"insert_deduplication_token": token} if token else None
        with self._lock:
            self.client.insert(table, rows, column_names=list(columns), settings=settings)

    def reload_token(self) -> str | None:
        """The insert_deduplication_token of a reference table's reload (TRUNCATE, then its rows): none on
        one server; on a cluster a new one per load, so that a reload of the same rows as an earlier load
        (every start) is never dropped as its repeat: a TRUNCATE of a replicated table is not relied on
        to forget the earlier load's block ids (ClickHouse issue #120904: after DROP PART, 26.x drops
        such a re-insert from a stale deduplication cache)."""
        return uuid.uuid4().hex if self.cluster else None

    def reload_dictionary(self, dictionary: str, source: str) -> None:
        """Reload a dictionary after its source table was reloaded. On a cluster, every node's, once
        every node's replica of the source has the new rows (SYSTEM SYNC REPLICA ON CLUSTER first)."""
        with self._lock:
            if self.cluster:
                self._ddl(f"SYSTEM SYNC REPLICA {source}")
            self._ddl(f"SYSTEM RELOAD DICTIONARY {dictionary}")

    def command(self, sql: str) -> None:
        with self._lock:
            self.client.command(sql)

    def query(self, sql: str, *, read_only: bool = True,
              params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a query; `params` fill ClickHouse query parameters such as {name:String}."""
        if read_only:
            sql = check_read_only(sql)
        with self._lock:
            result = self.client.query(sql, parameters=params or None, settings={"readonly": 2} if read_only else None)
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def read(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """What every read path (`POST /query`, `sql`, `lookup`, `report`) runs: one read statement over
        the warehouse's own tables, refused (NotReadOnly) otherwise, run with readonly=2."""
        self.check_sources(sql, params)
        return self.query(sql, params=params)

    def check_sources(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """Refuse (NotReadOnly) a statement that reads anything but the warehouse's tables, by
        ClickHouse's own parser: what the read paths (`POST /query`, `sms-analytics sql`) run first."""
        text = check_read_only(sql)
        with self._lock:
            result = self.client.query(f"EXPLAIN AST {text}", parameters=params or None, settings={"readonly": 2})
        unsafe = unsafe_sources("\n".join(str(row[0]) for row in result.result_rows))
        if unsafe:
            raise NotReadOnly(f"only the warehouse's tables can be read here, not {', '.join(sorted(set(unsafe)))} "
                              f"(allowed table functions: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})")

    def ping(self) -> bool:
        try:
            self.query("SELECT 1")
            return True
        except Exception:  # noqa: BLE001  (any error: not reachable)
            return False
