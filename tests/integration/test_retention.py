"""Warehouse retention: every time-series table has a TTL from the settings, applied at every start;
expired message parts go while the rollups of their minutes stay, even through a recompute round.

The scenario sets a 2-day message retention, which would expire every other test's data (timed in
2023), and one process opens one chDB path only: it runs in a child process on a warehouse of its own
(this file run as a script), and the tests here check what it saw."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sms_analytics.model.events import Delivery
from sms_analytics.settings import Settings
from sms_analytics.sinks.rows import MESSAGE_COLUMNS, REPLY_COLUMNS, message_row
from sms_analytics.sinks.warehouse import NO_TTL, Warehouse, migrations, statements

DAY = 86_400
FIRST = dict(sms_retention_days=30, sms_rollup_retention_days=60)  # the first start
SECOND = dict(sms_retention_days=2, sms_rollup_retention_days=7)  # the next start: the parts of 4 days ago expire
BASE = dict(provider="tencent", phone="+8613900000009", carrier="mobile", country_code="86", has_send=True,
            template="TTL", sign="S")


def _settings(data_dir: str, retention: dict[str, int]) -> Settings:
    return Settings(_env_file=None, sms_data_dir=Path(data_dir), sms_expire_after=3600, **retention)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _messages(tag: str, minute_s: int) -> list[Delivery]:
    """Three messages sent in one minute: delivered, failed (code TTL:1), never a receipt (expired)."""
    sent = minute_s * 1000 + 1234
    base = dict(BASE, sent_at_ms=sent, updated_at_ms=sent)
    return [
        Delivery(**base, message_id=f"{tag}-ok", phone_hash=f"{tag}-h1", phone_masked="139****0001",
                 status="delivered", stage="receipt", outcome_at_ms=sent + 4000, error_code="DELIVRD",
                 failure_category="delivered", receipt_ids=[f"{tag}-r1"]),
        Delivery(**base, message_id=f"{tag}-failed", phone_hash=f"{tag}-h2", phone_masked="139****0002",
                 status="failed", stage="receipt", outcome_at_ms=sent + 5000, error_code="TTL:1",
                 failure_category="unreachable", receipt_ids=[f"{tag}-r2"]),
        Delivery(**base, message_id=f"{tag}-pending", phone_hash=f"{tag}-h3", phone_masked="139****0003"),
    ]


def _rows(wh: Warehouse, sql: str) -> list[list[Any]]:
    _, rows = wh.query(sql)
    return [[v.isoformat() if isinstance(v, datetime) else v for v in r] for r in rows]


def _rollups(wh: Warehouse, minutes: list[int]) -> dict[str, Any]:
    """What the panels read of these minutes: every rollup table, through its view."""
    m = ", ".join(f"toDateTime({s}, 'UTC')" for s in minutes)
    day = ", ".join(f"toDateTime({s // DAY * DAY}, 'UTC')" for s in minutes)
    return {
        "minute": _rows(wh, "SELECT toUnixTimestamp(minute), sum(sent), sum(delivered), sum(failed), sum(expired), "
                            f"sum(pending) FROM sms.rollup_minute WHERE minute IN ({m}) GROUP BY minute ORDER BY 1"),
        "errors": _rows(wh, "SELECT toUnixTimestamp(minute), error_code, sum(messages) FROM sms.rollup_error_minute "
                            f"WHERE minute IN ({m}) GROUP BY 1, 2 ORDER BY 1, 2"),
        "levels": _rows(wh, "SELECT grain, level, toUnixTimestamp(bucket), sum(sent), sum(delivered) FROM sms.rollup_level "
                            f"WHERE (level = 60 AND bucket IN ({m})) OR (level = 86400 AND bucket IN ({day})) "
                            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
        "generations": _rows(wh, "SELECT toUnixTimestamp(minute), toString(max(generation)) FROM sms.rollup_minute_raw "
                                 f"WHERE minute IN ({m}) GROUP BY minute ORDER BY 1"),
    }


def _wait_for_mutations(wh: Warehouse, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _rows(wh, "SELECT count() FROM system.mutations WHERE database = 'sms' AND NOT is_done")[0][0]:
        assert time.monotonic() < deadline, "mutations still running"
        time.sleep(0.1)


def _start(data_dir: str, retention: dict[str, int]) -> tuple[Warehouse, Settings, list[str]]:
    """What Runtime.start does with the warehouse."""
    s = _settings(data_dir, retention)
    wh = Warehouse(s.warehouse_url).open()
    wh.migrate()
    wh.apply_views(int(s.sms_expire_after.total_seconds()))
    return wh, s, wh.apply_retention(s.sms_retention_days, s.sms_rollup_retention_days)


def scenario(data_dir: str) -> dict[str, Any]:
    from sms_analytics.sinks.rollups import Rollups

    out: dict[str, Any] = {}
    now = int(time.time())
    old, fresh = (now - 4 * DAY) // 60 * 60, (now - 3600) // 60 * 60
    out["minutes"] = [old, fresh]
    deliveries = {"old": _messages("old", old), "fresh": _messages("fresh", fresh)}

    # First start (30 days): the parts of 4 days ago are in retention, written when they were sent.
    wh, s, out["first_start"] = _start(data_dir, FIRST)
    for tag, minute in (("old", old), ("fresh", fresh)):
        wh.insert("sms.message_parts", [[*message_row(d, store_raw_phone=False), _at(minute)] for d in deliveries[tag]],
                  (*MESSAGE_COLUMNS, "stored_at"))
        wh.insert("sms.replies", [["tencent", f"{tag}-reply", f"{tag}-h1", "139****0001", "mobile", "86", "TD", "S", "",
                                   _at(minute), _at(minute)]], REPLY_COLUMNS)
    rollups = Rollups(wh, int(s.sms_expire_after.total_seconds()), s.sms_retention_days)
    rollups.mark(deliveries["old"] + deliveries["fresh"])
    out["first_recomputed"] = rollups.recompute()
    out["rollups_before"] = _rollups(wh, [old, fresh])
    wh.close()

    # The next start, with a shorter retention: the TTLs change, the old parts expire.
    wh, s, out["second_start"] = _start(data_dir, SECOND)
    out["same_settings_again"] = wh.apply_retention(s.sms_retention_days, s.sms_rollup_retention_days)
    out["show_create"] = {t: _rows(wh, f"SHOW CREATE TABLE sms.{t}")[0][0] for t in ("message_parts", "rollup_minute_raw")}
    _wait_for_mutations(wh)
    # MATERIALIZE TTL (recalculate only) gave the parts written before the change their new bounds, which
    # the background TTL merges go by: they delete the old parts' rows soon, without an OPTIMIZE.
    out["parts_due"] = _rows(wh, "SELECT name, rows, toUnixTimestamp(delete_ttl_info_min) FROM system.parts "
                                 "WHERE database = 'sms' AND table = 'message_parts' AND active")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_rows(wh, "SELECT DISTINCT message_id FROM sms.message_parts")) > 3:
        time.sleep(0.2)
    out["parts_background"] = _rows(wh, "SELECT DISTINCT message_id FROM sms.message_parts ORDER BY 1")
    out["ttl_tables"] = _rows(wh, "SELECT name, engine_full FROM system.tables WHERE database = 'sms' "
                                  "AND engine LIKE '%MergeTree%' ORDER BY name")
    for (table,) in _rows(wh, "SELECT name FROM system.tables WHERE database = 'sms' AND engine LIKE '%MergeTree%'"):
        wh.command(f"OPTIMIZE TABLE sms.{table} FINAL")  # what the TTL merges do, now
    out["parts_after"] = _rows(wh, "SELECT DISTINCT message_id FROM sms.message_parts ORDER BY 1")
    out["messages_after"] = _rows(wh, "SELECT message_id, status FROM sms.messages ORDER BY 1")
    out["replies_after"] = _rows(wh, "SELECT reply_id FROM sms.replies ORDER BY 1")
    out["undelivered_after"] = _rows(wh, "SELECT message_id FROM sms.undelivered_messages ORDER BY 1")
    out["rollups_after_ttl"] = _rollups(wh, [old, fresh])

    # A recompute round that touches the old minute every way one can: a part of it written again (a replay,
    # kept for the retention from now on), the recovery at start, the expiry check, the messages marked dirty.
    wh.insert("sms.message_parts", [message_row(d, store_raw_phone=False) for d in deliveries["old"][:1]],
              MESSAGE_COLUMNS)
    rollups = Rollups(wh, int(s.sms_expire_after.total_seconds()), s.sms_retention_days)
    rollups.recover()
    rollups.mark_expiring(now)
    rollups.mark(deliveries["old"] + deliveries["fresh"])
    out["marked_old"] = old in rollups.dirty
    out["second_recomputed"] = rollups.recompute()
    out["rollups_after_recompute"] = _rollups(wh, [old, fresh])

    # The same round without the retention horizon would have wiped the old minute's rollups.
    unguarded = Rollups(wh, int(s.sms_expire_after.total_seconds()))
    unguarded.mark(deliveries["old"])
    unguarded.recompute()
    out["rollups_unguarded"] = _rollups(wh, [old])

    # Every statement parses with ClickHouse's parser (production is a server, not chDB).
    texts = [sql for _, sql in migrations()] + [
        (Path(__file__).resolve().parents[2] / "src/sms_analytics/sinks/retention.sql").read_text(encoding="utf-8")
        .replace("{message_days}", "2").replace("{rollup_days}", "7")]
    out["unparsed"] = []
    for statement in (st for text in texts for st in statements(text)):
        try:
            wh.client.query("SELECT formatQuery({q:String})", parameters={"q": statement})
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out["unparsed"].append(f"{statement[:80]}: {str(exc)[:200]}")
    wh.close()

    # A third start with other numbers: applied, and shown by SHOW CREATE TABLE.
    wh, _, out["third_start"] = _start(data_dir, dict(sms_retention_days=3, sms_rollup_retention_days=9))
    out["show_create_third"] = {t: _rows(wh, f"SHOW CREATE TABLE sms.{t}")[0][0]
                                for t in ("message_parts", "replies", "rollup_level_raw")}
    wh.close()
    return out


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("retention")
    done = subprocess.run([sys.executable, __file__, str(data_dir)], capture_output=True, text=True, timeout=240)
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and result, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(result[-1].removeprefix("RESULT "))


def test_expired_message_parts_go_while_their_minutes_rollups_stay(seen: dict[str, Any]) -> None:
    old, fresh = seen["minutes"]
    assert seen["first_recomputed"] >= 2
    before = seen["rollups_before"]
    assert before["minute"] == [[old, 3, 1, 1, 1, 0], [fresh, 3, 1, 1, 1, 0]]
    assert before["errors"] == [[old, "TTL:1", 1], [fresh, "TTL:1", 1]]
    assert {(grain, level) for grain, level, *_ in before["levels"]} >= {("carrier", 60), ("carrier", 86400)}
    assert all(ttl_min > 0 for _, rows, ttl_min in seen["parts_due"] if rows), seen["parts_due"]  # every part has its TTL
    fresh_ids = ["fresh-failed", "fresh-ok", "fresh-pending"]
    assert [r[0] for r in seen["parts_background"]] == fresh_ids  # gone by a background TTL merge
    assert [r[0] for r in seen["parts_after"]] == fresh_ids
    assert seen["messages_after"] == [["fresh-failed", "failed"], ["fresh-ok", "delivered"], ["fresh-pending", "expired"]]
    assert seen["replies_after"] == [["fresh-reply"]]
    assert seen["undelivered_after"] == [["fresh-failed"], ["fresh-pending"]]  # per message: the old ones went
    assert seen["rollups_after_ttl"] == before  # 4 days old, inside the 7 days of the rollups


def test_a_recompute_round_keeps_the_rollups_of_expired_minutes(seen: dict[str, Any]) -> None:
    old, fresh = seen["minutes"]
    assert seen["marked_old"]
    assert seen["second_recomputed"] >= 1  # the fresh minute (and the expiry check's)
    after = seen["rollups_after_recompute"]
    before = seen["rollups_before"]
    assert after["minute"] == before["minute"] and after["errors"] == before["errors"]
    assert after["levels"] == before["levels"]
    generations = dict(map(tuple, after["generations"]))
    assert generations[old] == dict(map(tuple, before["generations"]))[old]  # not recomputed at all
    assert generations[fresh] > dict(map(tuple, before["generations"]))[fresh]  # recomputed
    # Without the horizon the recompute reads the parts left (the replayed delivered one) and loses the others.
    assert seen["rollups_unguarded"]["minute"] == [[old, 1, 1, 0, 0, 0]] and seen["rollups_unguarded"]["errors"] == []


def test_a_changed_setting_is_applied_at_the_next_start(seen: dict[str, Any]) -> None:
    assert len(seen["first_start"]) == 11  # every table of retention.sql got its TTL
    assert sorted(seen["second_start"]) == sorted(seen["first_start"])  # both days changed
    assert seen["same_settings_again"] == []  # unchanged: nothing altered, nothing rematerialized
    create = seen["show_create"]
    assert "TTL greatest(stored_at, toDateTime(coalesce(sent_at, receipt_sent_at, stored_at))) + toIntervalDay(2)" \
        in create["message_parts"]
    assert "TTL minute + toIntervalDay(7)" in create["rollup_minute_raw"]
    assert "materialize_ttl_recalculate_only = 1" in create["message_parts"]
    third = seen["show_create_third"]
    assert "toIntervalDay(3)" in third["message_parts"] and "toIntervalDay(3)" in third["replies"]
    assert "toIntervalDay(9)" in third["rollup_level_raw"]


def test_every_merge_tree_table_has_a_ttl(seen: dict[str, Any]) -> None:
    """A new table without a TTL fails here: give it one in sinks/retention.sql, or say in NO_TTL why not."""
    engines = dict(map(tuple, seen["ttl_tables"]))
    assert set(NO_TTL) <= set(engines), "NO_TTL names a table that does not exist"
    without = sorted(t for t, engine in engines.items() if not re.search(r"\sTTL\s", engine))
    assert without == sorted(NO_TTL)
    for table, engine in engines.items():
        if table not in NO_TTL:  # so that the MATERIALIZE TTL of a changed setting never rewrites the table
            assert "materialize_ttl_recalculate_only = 1" in engine, table


def test_every_statement_parses(seen: dict[str, Any]) -> None:
    assert seen["unparsed"] == []


def test_rollups_must_outlive_messages_and_messages_their_expiry(tmp_path: Path) -> None:
    assert _settings(str(tmp_path), {}).sms_retention_days == 90
    assert _settings(str(tmp_path), {}).sms_rollup_retention_days == 730
    with pytest.raises(ValueError, match="SMS_ROLLUP_RETENTION_DAYS"):
        _settings(str(tmp_path), dict(sms_retention_days=30, sms_rollup_retention_days=30))
    with pytest.raises(ValueError, match="SMS_EXPIRE_AFTER"):
        Settings(_env_file=None, sms_expire_after=72 * 3600, sms_retention_days=3)


@pytest.mark.pipeline
async def test_the_pipeline_starts_with_the_configured_ttls(pipeline: Any) -> None:
    s = pipeline.settings
    assert pipeline.sink.rollups.retention_seconds == s.sms_retention_days * DAY
    _, rows = pipeline.warehouse.query("SELECT name, engine_full FROM system.tables WHERE database = 'sms' "
                                       "AND engine LIKE '%MergeTree%'")
    engines = dict(rows)
    assert f"toIntervalDay({s.sms_retention_days})" in engines["message_parts"]
    assert f"toIntervalDay({s.sms_rollup_retention_days})" in engines["rollup_minute_raw"]
    assert sorted(t for t, e in engines.items() if " TTL " not in e) == sorted(NO_TTL)


if __name__ == "__main__":
    print("RESULT " + json.dumps(scenario(sys.argv[1])), flush=True)
