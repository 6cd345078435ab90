"""Migration 0015 on a warehouse created before it: province joins the rollups' columns and sorting keys, the
migration runs twice unchanged, and the minutes rolled up before it are recomputed at the next start with their
provinces (Rollups.recover's backfill of the newest grain). chDB opens one path per process, so the warehouse
lives in a child process (this file run as a script), as tests/integration/test_retention.py does."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

MINUTE = 1_700_000_040  # a minute start (epoch seconds), in no other test's data
PROVINCES = {"广东": 3, "北京": 2, "": 1}  # province -> messages sent in MINUTE (one failed in 广东)


def _deliveries() -> list[Any]:
    from sms_analytics.model.events import Delivery

    out = []
    for province, count in PROVINCES.items():
        for i in range(count):
            n = len(out)
            sent = MINUTE * 1000 + 1000 + n
            failed = province == "广东" and i == 0
            out.append(Delivery(
                provider="regiontest", message_id=f"region-{n}", phone=f"+86139{n:08d}", phone_hash=f"region-h{n}", phone_masked="139****0001",
                carrier="mobile", country_code="86", has_send=True, template="TPL", sign="Sign", segments=1,
                sent_at_ms=sent, updated_at_ms=sent + 3000, province=province, status="failed" if failed else "delivered",
                stage="receipt", outcome_at_ms=sent + 3000, error_code="MK:0001" if failed else "DELIVRD",
                failure_category="unreachable" if failed else "delivered", receipt_ids=[f"region-r{n}"]))
    return out


def _before_0015(wh: Any) -> None:
    """The warehouse as a release before 0015 left it: migrations up to 0014, the minute's messages, and its
    rollups as the recompute of then wrote them (no province; its grains' generations written)."""
    from sms_analytics.sinks import warehouse as warehouse_module
    from sms_analytics.sinks.rows import MESSAGE_COLUMNS, message_row

    every = warehouse_module.migrations
    warehouse_module.migrations = lambda: [(v, sql) for v, sql in every() if v < "0015"]  # type: ignore[assignment]
    try:
        wh.migrate()
    finally:
        warehouse_module.migrations = every  # type: ignore[assignment]
    deliveries = _deliveries()
    wh.insert("sms.message_parts", [message_row(d, store_raw_phone=False) for d in deliveries], MESSAGE_COLUMNS)
    at = f"toDateTime({MINUTE}, 'UTC')"
    wh.command("INSERT INTO sms.rollup_minute_raw (minute, provider, carrier, template, sign, country_code, "
               f"failure_category, sent, delivered, failed, generation) VALUES ({at}, 'regiontest', 'mobile', 'TPL', "
               f"'Sign', '86', 'delivered', 6, 5, 1, now64(6))")
    wh.command("INSERT INTO sms.rollup_level_generations SELECT grain, 60, "
               f"{at}, now64(6) FROM (SELECT arrayJoin(['carrier', 'provider_carrier']) AS grain)")


def scenario(data_dir: str) -> dict[str, Any]:
    from sms_analytics.sinks.rollups import Rollups
    from sms_analytics.sinks.warehouse import Warehouse, migrations, statements

    wh = Warehouse(f"chdb:///{data_dir}/warehouse").open()
    out: dict[str, Any] = {}
    _before_0015(wh)
    out["applied"] = wh.migrate()
    (sql,) = [text for version, text in migrations() if version.startswith("0015")]
    for statement in statements(sql):  # re-runnable: the second run changes nothing and raises nothing
        wh.command(statement)
    wh.apply_views(72 * 3600)
    out["sorting_keys"] = {r[0]: r[1] for r in wh.query(
        "SELECT name, sorting_key FROM system.tables WHERE database = 'sms' AND name IN "
        "('rollup_minute_raw', 'rollup_error_minute_raw', 'rollup_level_raw')")[1]}
    _, before = wh.query(f"SELECT province, sum(sent) FROM sms.rollup_minute WHERE minute = toDateTime({MINUTE}, 'UTC') "
                         "GROUP BY province ORDER BY province")
    out["before"] = [list(r) for r in before]
    rollups = Rollups(wh, 72 * 3600)
    rollups.recover()
    out["backfill"] = sorted(rollups._backfill)
    out["recomputed"] = rollups.recompute()
    where = f"minute = toDateTime({MINUTE}, 'UTC') AND provider = 'regiontest'"
    out["minute"] = [list(r) for r in wh.query(
        f"SELECT province, sum(sent), sum(failed) FROM sms.rollup_minute WHERE {where} GROUP BY province ORDER BY province")[1]]
    out["errors"] = [list(r) for r in wh.query(
        f"SELECT province, sum(messages) FROM sms.rollup_error_minute WHERE {where} GROUP BY province")[1]]
    out["grain"] = [list(r) for r in wh.query(
        "SELECT level, province, sum(sent) FROM sms.rollup_level WHERE grain = 'provider_carrier_province' "
        f"AND bucket = toDateTime({MINUTE}, 'UTC') AND provider = 'regiontest' GROUP BY level, province "
        "ORDER BY level, province")[1]]
    out["carrier_grain"] = [list(r) for r in wh.query(
        "SELECT province, sum(sent) FROM sms.rollup_level WHERE grain = 'carrier' AND level = 60 "
        f"AND bucket = toDateTime({MINUTE}, 'UTC') GROUP BY province")[1]]
    rollups.recover()
    out["backfill_after"] = sorted(rollups._backfill)
    wh.close()
    return out


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("region_rollups")
    done = subprocess.run([sys.executable, __file__, str(data_dir)], capture_output=True, text=True, timeout=240)
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and result, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(json.loads(result[-1].removeprefix("RESULT ")))


def test_the_migration_adds_province_to_the_sorting_keys_and_runs_twice(seen: dict[str, Any]) -> None:
    # the migrations newer than the warehouse: 0015 and whatever came after it
    assert seen["applied"][0] == "0015_region_rollups" and seen["applied"] == sorted(seen["applied"])
    assert seen["sorting_keys"] == {
        "rollup_minute_raw": "minute, provider, carrier, template, sign, country_code, failure_category, province",
        "rollup_error_minute_raw": "minute, provider, carrier, template, sign, country_code, failure_category, "
                                   "error_code, outcome_stage, province",
        "rollup_level_raw": "grain, level, bucket, provider, carrier, template, sign, country_code, province"}


def test_minutes_rolled_up_before_it_are_recomputed_with_their_provinces(seen: dict[str, Any]) -> None:
    assert seen["before"] == [["", 6]]  # the old rollups: every province ''
    assert seen["backfill"] == [MINUTE] and seen["recomputed"] == 1
    assert seen["minute"] == [["", 1, 0], ["北京", 2, 0], ["广东", 3, 1]]
    assert seen["errors"] == [["广东", 1]]
    levels = (60, 300, 600, 3600, 21600, 86400)
    assert seen["grain"] == [[lv, p, n] for lv in levels for p, n in (("", 1), ("北京", 2), ("广东", 3))
                             if MINUTE % lv == 0]
    assert seen["carrier_grain"] == [["", 6]]  # grains without province keep '' (all provinces)
    assert seen["backfill_after"] == []  # recomputed once: the next start has nothing left to backfill


if __name__ == "__main__":
    print("RESULT " + json.dumps(scenario(sys.argv[1])), flush=True)
