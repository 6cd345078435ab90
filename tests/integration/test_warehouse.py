"""The warehouse merge on chDB: parts of one message inserted in any order, replayed, or missing
their send, fold into one correct row, whether or not the parts were merged on disk."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from sms_analytics.model.events import Delivery
from sms_analytics.runtime import Runtime
from sms_analytics.sinks.rows import MESSAGE_COLUMNS, message_row
from sms_analytics.sinks.warehouse import Warehouse, check_read_only, migrations

BASE = dict(provider="aliyun", phone="+8613900000001", phone_hash="h1", phone_masked="139****0001",
            carrier="mobile", country_code="86")


@pytest.fixture(scope="module")
def warehouse(pipeline: Runtime) -> Warehouse:
    """The pipeline's own chDB warehouse: one process can open only one chDB path."""
    assert pipeline.warehouse is not None
    return pipeline.warehouse


def test_migrations_are_recorded_and_idempotent(warehouse: Warehouse) -> None:
    assert warehouse.migrate() == []
    _, rows = warehouse.query("SELECT version FROM sms.schema_migrations FINAL ORDER BY version")
    assert [r[0] for r in rows] == [version for version, _ in migrations()] and rows[0] == ("0001_messages",)


def parts(mid: str) -> dict[str, Delivery]:
    send = Delivery(**BASE, message_id=mid, has_send=True, template="T", sign="S", segments=2,
                    sent_at_ms=1_700_000_000_000, updated_at_ms=1)
    fail = Delivery(**BASE, message_id=mid, status="failed", stage="receipt", outcome_at_ms=1_700_000_004_000,
                    error_code="MK:0001", failure_category="unreachable", receipt_ids=["r1"], updated_at_ms=2)
    ok = Delivery(**BASE, message_id=mid, status="delivered", stage="receipt", outcome_at_ms=1_700_000_009_000,
                  error_code="DELIVERED", failure_category="delivered", receipt_ids=["r2"], updated_at_ms=3)
    joined = Delivery(**BASE, message_id=mid, has_send=True, template="T", sign="S", segments=2,
                      sent_at_ms=1_700_000_000_000, status="failed", stage="receipt",
                      outcome_at_ms=1_700_000_004_000, error_code="MK:0001", failure_category="unreachable",
                      receipt_ids=["r1"], updated_at_ms=4)
    return {"send": send, "fail": fail, "ok": ok, "joined": joined}


@pytest.mark.parametrize("order", list(itertools.permutations(["send", "fail", "ok", "joined"])))
@pytest.mark.parametrize("optimize", [False, True])
def test_parts_fold_into_one_row_in_any_order(warehouse: Warehouse, order: tuple[str, ...], optimize: bool) -> None:
    mid = f"m-{'-'.join(order)}-{optimize}"
    p = parts(mid)
    for name in order + order[:2]:  # every part once, then two replays
        warehouse.insert("sms.message_parts", [message_row(p[name], store_raw_phone=False)], MESSAGE_COLUMNS)
    if optimize:
        warehouse.query("OPTIMIZE TABLE sms.message_parts FINAL", read_only=False)
    for final in ("", " FINAL"):
        _cols, rows = warehouse.query(
            f"SELECT status, error_code, latency_ms, receipt_count, template, segments, sent_at IS NOT NULL, "
            f"failure_category FROM sms.messages{final} WHERE message_id = '{mid}'")
        assert rows == [("delivered", "DELIVERED", 9000, 2, "T", 2, True, "delivered")], (final, rows)


def test_insert_token_deduplicates_a_retried_batch(warehouse: Warehouse) -> None:
    row = message_row(parts("dedup")["fail"], store_raw_phone=False)
    for _ in range(3):
        warehouse.insert("sms.message_parts", [row], MESSAGE_COLUMNS, token="batch-1")
    _, rows = warehouse.query("SELECT count() FROM sms.message_parts WHERE message_id = 'dedup'")
    assert rows == [(1,)]


def test_json_ingest_writes_the_same_parts_as_rows(warehouse: Warehouse) -> None:
    """The sink's path (deliveries' JSON into sms.delivery_ingest, the view maps them) and the row
    path (sinks/rows.py) write identical parts; the raw number only through the _raw entry."""
    from sms_analytics.model.events import encode_deliveries

    by_rows, by_json = parts("via-rows"), parts("via-json")
    for d in by_json.values():
        d.phone = "+8613900000000"
    warehouse.insert("sms.message_parts", [message_row(d, store_raw_phone=False) for d in by_rows.values()],
                     MESSAGE_COLUMNS)
    warehouse.insert_json("sms.delivery_ingest", encode_deliveries(list(by_json.values())))
    columns = ", ".join(c for c in MESSAGE_COLUMNS if c != "message_id")
    _, rows = warehouse.query(f"SELECT message_id, {columns} FROM sms.message_parts "
                              f"WHERE message_id IN ('via-rows', 'via-json') ORDER BY message_id, updated_at")
    got = {mid: [r[1:] for r in rows if r[0] == mid] for mid in ("via-rows", "via-json")}
    assert got["via-json"] == got["via-rows"] and got["via-json"]  # (one block: folded on insert)
    _, merged = warehouse.query("SELECT * EXCEPT (message_id) FROM sms.messages WHERE message_id IN ('via-rows', "
                                "'via-json') ORDER BY message_id")
    assert len(merged) == 2 and merged[0] == merged[1]
    raw = parts("via-json-raw")["send"]
    raw.phone = "+8613900000001"
    warehouse.insert_json("sms.delivery_ingest_raw", encode_deliveries([raw]))
    _, rows = warehouse.query("SELECT phone_raw FROM sms.message_parts WHERE message_id IN ('via-json', 'via-json-raw') "
                              "ORDER BY message_id")
    assert {r[0] for r in rows} == {None, "+8613900000001"}


def test_json_ingest_token_deduplicates_a_retried_batch(warehouse: Warehouse) -> None:
    from sms_analytics.model.events import encode_deliveries

    body = encode_deliveries([parts("dedup-json")["fail"]])
    for _ in range(3):
        warehouse.insert_json("sms.delivery_ingest", body, token="json-batch-1")
    _, rows = warehouse.query("SELECT count() FROM sms.message_parts WHERE message_id = 'dedup-json'")
    assert rows == [(1,)]


def test_read_only_engine_setting_refuses_a_write_disguised_as_select(warehouse: Warehouse) -> None:
    assert check_read_only("SELECT ';' AS x") == "SELECT ';' AS x"
    with pytest.raises(Exception, match=r"(?i)readonly"):
        warehouse.query("SELECT * FROM url('http://127.0.0.1:1/x', CSV, 'a String') "
                        "SETTINGS readonly = 0")


def late_receipts(base: dict[str, Any], minute_ms: int, *, template: str, error_code: str,
                  failure_category: str) -> tuple[Delivery, Delivery, Delivery]:
    """The parts of one message sent 1 s into `minute_ms`'s minute: its send, a failure receipt (4 s later), then
    a delivery receipt (8 s after the send) that wins over the failure."""
    send = Delivery(**base, has_send=True, template=template, sign="S", sent_at_ms=minute_ms + 1000, updated_at_ms=1)
    fail = Delivery(**base, status="failed", stage="receipt", outcome_at_ms=minute_ms + 5000, error_code=error_code,
                    failure_category=failure_category, receipt_ids=["a"], updated_at_ms=2)
    ok = Delivery(**base, status="delivered", stage="receipt", outcome_at_ms=minute_ms + 9000, error_code="DELIVRD",
                  failure_category="delivered", receipt_ids=["b"], updated_at_ms=3)
    return send, fail, ok


def test_rollups_follow_late_receipts_without_double_counting(warehouse: Warehouse) -> None:
    from sms_analytics.sinks.rollups import Rollups

    rollups = Rollups(warehouse, expire_after_seconds=72 * 3600)
    minute_ms = 1_800_000_000_000 // 60_000 * 60_000  # a minute of its own, in 2027
    send, fail, ok = late_receipts(dict(BASE, provider="tencent", phone_hash="roll", message_id="roll-1"), minute_ms,
                                   template="TR", error_code="X", failure_category="unreachable")
    query = (f"SELECT failure_category, sum(sent), sum(delivered), sum(failed), sum(pending), "
             f"quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state)[1] FROM sms.rollup_minute "
             f"WHERE minute = toDateTime({minute_ms // 1000}, 'UTC') GROUP BY failure_category ORDER BY failure_category")
    for part, expected in ((send, [("", 1, 0, 0, 1)]), (fail, [("unreachable", 1, 0, 1, 0)]),
                           (ok, [("delivered", 1, 1, 0, 0)]), (fail, [("delivered", 1, 1, 0, 0)])):
        warehouse.insert("sms.message_parts", [message_row(part, store_raw_phone=False)], MESSAGE_COLUMNS)
        rollups.mark([send])
        assert rollups.recompute() == 1
        _, rows = warehouse.query(query)
        assert [r[:5] for r in rows] == expected
    assert abs(rows[0][5] - 8000) <= 8000 * 0.005


def test_panel_rollups_follow_late_receipts(warehouse: Warehouse) -> None:
    """The tables the panels read (migrations/0009) follow a message from pending to failed to delivered
    like sms.rollup_minute: the coarser levels sum the minute, the error-code rollup and the undelivered
    list hold it only while it is failed (or pending), nothing counts twice."""
    from sms_analytics.sinks.rollups import Rollups

    rollups = Rollups(warehouse, expire_after_seconds=72 * 3600)
    minute_ms = (1_800_000_000_000 + 3 * 86_400_000) // 60_000 * 60_000  # a day of its own, in 2027
    send, fail, ok = late_receipts(dict(BASE, provider="tencent", phone_hash="panel-roll", phone_masked="139****7777",
                                        message_id="panel-roll-1"), minute_ms,
                                   template="TP", error_code="PANEL:1", failure_category="unknown")
    s = minute_ms // 1000
    levels = (f"SELECT grain, level, sum(sent), sum(delivered), sum(failed), sum(pending), "
              f"round(quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state)[1]) FROM sms.rollup_level "
              f"WHERE bucket >= toDateTime({s // 86400 * 86400}) AND bucket <= toDateTime({s}) "
              f"AND provider IN ('tencent', '') AND carrier = 'mobile' GROUP BY grain, level ORDER BY grain, level")
    for part, counts, undelivered, errors in (
            (send, (1, 0, 0, 1), [("pending", "")], []),
            (fail, (1, 0, 1, 0), [("failed", "PANEL:1")], [("PANEL:1", 1)]),
            (ok, (1, 1, 0, 0), [], []),
            (fail, (1, 1, 0, 0), [], [])):
        warehouse.insert("sms.message_parts", [message_row(part, store_raw_phone=False)], MESSAGE_COLUMNS)
        rollups.mark([send])
        assert rollups.recompute() == 1
        _, rows = warehouse.query(levels)
        assert [(r[0], r[1]) for r in rows] == [("all_provinces", lv) for lv in (60, 600, 3600, 21600, 86400)] + \
            [("carrier", lv) for lv in (60, 300, 600, 3600, 21600, 86400)] + \
            [("full", lv) for lv in (600, 3600, 21600, 86400)] + \
            [("provider_carrier", lv) for lv in (60, 300, 600, 3600, 21600, 86400)] + \
            [("provider_carrier_province", lv) for lv in (60, 300, 600, 3600, 21600, 86400)]
        assert {r[2:6] for r in rows} == {counts}
        if counts[1]:
            (p50,) = {r[6] for r in rows}  # every level merges the same sketch
            assert abs(p50 - 8000) <= 8000 * 0.005
        _, rows = warehouse.query(f"SELECT status, error_code FROM sms.undelivered_messages "
                                  f"WHERE minute = toDateTime({s}) AND message_id = 'panel-roll-1'")
        assert rows == undelivered
        _, rows = warehouse.query(f"SELECT error_code, sum(messages) FROM sms.rollup_error_minute "
                                  f"WHERE minute = toDateTime({s}) GROUP BY error_code")
        assert rows == errors


def test_recompute_filters_the_keys_of_its_minutes_before_the_merge(warehouse: Warehouse) -> None:
    """The recompute reads sms.messages (sms.message_parts FINAL) restricted to the keys of the parts of its
    minutes, and ClickHouse applies that restriction before the FINAL merge (PREWHERE): a round merges the
    messages of its minutes, not the whole table."""
    from sms_analytics.sinks.rollups import MATERIALIZE, _times

    sql = MATERIALIZE.format(scratch="unused", minutes=_times([1_800_000_000 // 60 * 60]))
    _, rows = warehouse.query("EXPLAIN actions = 1 " + sql[sql.index("SELECT"):])
    plan = "\n".join(r[0] for r in rows)
    read = plan[plan.index("ReadFromMergeTree (sms.message_parts)"):]
    steps = "\n".join(line for line in read.splitlines() if "Output:" not in line)  # without the long column lists
    assert "FINAL: 1" in read and re.search(r"Prewhere filter column:\s+tuple\(provider, message_id, phone_hash\) IN",
                                            read), steps


def test_rollups_count_a_message_in_the_minute_of_its_merged_send_time(warehouse: Warehouse) -> None:
    """A message known first from its receipt counts in the minute of the receipt's send time; when its send
    (a minute later) arrives, it moves there: the parts' key filter takes it for both minutes, the merged
    sent_at decides which one it is in."""
    from sms_analytics.sinks.rollups import Rollups

    rollups = Rollups(warehouse, expire_after_seconds=72 * 3600)
    a = (1_800_000_000_000 + 6 * 86_400_000) // 60_000 * 60_000  # a day of its own, in 2027
    base = dict(BASE, provider="aliyun", message_id="moved-1", phone_hash="moved")
    receipt = Delivery(**base, receipt_sent_at_ms=a + 59_000, status="delivered", stage="receipt",
                       outcome_at_ms=a + 65_000, error_code="DELIVERED", failure_category="delivered",
                       receipt_ids=["r"], updated_at_ms=1)
    send = Delivery(**base, has_send=True, template="T", sign="S", sent_at_ms=a + 61_000, updated_at_ms=2)
    query = (f"SELECT toUnixTimestamp(minute), sum(sent), sum(delivered), sum(latency_sum_ms) FROM sms.rollup_minute "
             f"WHERE minute IN (toDateTime({a // 1000}), toDateTime({a // 1000 + 60})) GROUP BY minute ORDER BY minute")
    for part, expected in ((receipt, [(a // 1000, 1, 1, 6000)]), (send, [(a // 1000 + 60, 1, 1, 4000)])):
        warehouse.insert("sms.message_parts", [message_row(part, store_raw_phone=False)], MESSAGE_COLUMNS)
        rollups.mark([receipt, send])
        assert rollups.recompute() == 2
        _, rows = warehouse.query(query)
        assert rows == expected
