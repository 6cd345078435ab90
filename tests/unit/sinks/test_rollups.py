"""sinks.rollups: the SQL builders, the dirty minutes, and a recompute against a recording stand-in
for the warehouse (no ClickHouse)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from sms_analytics.sinks import rollups
from sms_analytics.sinks.rollups import GRAINS, Rollups, level_sql, minute_levels_sql, minutes_of
from sms_analytics.sinks.warehouse import MATURATION_SECONDS


class Recorder:
    def __init__(self, answers=()):
        self.commands: list[str] = []
        self.queries: list[str] = []
        self.answers = list(answers)
        self.fail_on: str | None = None

    def command(self, sql):
        self.commands.append(sql)
        if self.fail_on and self.fail_on in sql:
            raise RuntimeError("boom")

    def query(self, sql, **_):
        self.queries.append(sql)
        return [], self.answers.pop(0)


def recorder(answers=()) -> Any:
    return Recorder(answers)


def as_warehouse(wh: Recorder) -> Any:
    return wh


def d(sent, receipt=None):
    return SimpleNamespace(sent_at_ms=sent, receipt_sent_at_ms=receipt)


def test_times_sorted():
    assert rollups._times([120, 60]) == "toDateTime(60, 'UTC'), toDateTime(120, 'UTC')"


def test_dimensions_of_each_grain():
    assert rollups._dimensions("full") == ("provider, carrier, template, sign, country_code, province",
                                           "provider, carrier, template, sign, country_code, province")
    assert rollups._dimensions("carrier") == ("'', carrier, '', '', '', ''", "carrier")
    assert rollups._dimensions("provider_carrier") == ("provider, carrier, '', '', '', ''", "provider, carrier")
    assert rollups._dimensions("provider_carrier_province") == ("provider, carrier, '', '', '', province",
                                                                "provider, carrier, province")
    assert rollups._dimensions("all_provinces") == ("provider, carrier, template, sign, country_code, ''",
                                                    "provider, carrier, template, sign, country_code")


def test_levels_divide_the_next():
    for _, levels in GRAINS.values():
        assert all(b % a == 0 for a, b in itertools.pairwise(levels))


def test_measures_have_one_maturation_count_each():
    assert rollups.MEASURES.count("latency_ms <= ") == 3 + len(MATURATION_SECONDS)
    for s in MATURATION_SECONDS:
        assert f"latency_ms <= {s * 1000})" in rollups.MEASURES


def test_minutes_of():
    assert minutes_of([d(61_000), d(119_999, 180_500), d(None, 300_000)]) == {60, 180, 300}
    assert minutes_of([]) == set()


def test_minute_levels_sql():
    rows, generations = minute_levels_sql("scratch_x", [120, 60], "G")
    assert rows.startswith("INSERT INTO sms.rollup_level_raw\n")
    assert rows.count("UNION ALL") == 3  # the four grains with a minute level
    assert "SELECT 'provider_carrier', 60, minute, provider, carrier, '', '', '', ''" in rows
    assert "SELECT 'provider_carrier_province', 60, minute, provider, carrier, '', '', '', province" in rows
    assert "FROM scratch_x GROUP BY minute, carrier" in rows
    assert "'full'" not in rows
    assert generations == (
        "INSERT INTO sms.rollup_level_generations\n"
        "SELECT 'provider_carrier', 60, arrayJoin([toDateTime(60, 'UTC'), toDateTime(120, 'UTC')]), G\n"
        "UNION ALL\n"
        "SELECT 'carrier', 60, arrayJoin([toDateTime(60, 'UTC'), toDateTime(120, 'UTC')]), G\n"
        "UNION ALL\n"
        "SELECT 'provider_carrier_province', 60, arrayJoin([toDateTime(60, 'UTC'), toDateTime(120, 'UTC')]), G\n"
        "UNION ALL\n"
        "SELECT 'all_provinces', 60, arrayJoin([toDateTime(60, 'UTC'), toDateTime(120, 'UTC')]), G")


def test_level_sql_full_first_level_reads_minutes():
    built = level_sql(600, [660, 1260], "G")
    assert built is not None
    rows, generations = built
    assert rows.count("UNION ALL") == 4  # full, provider_carrier, carrier, provider_carrier_province, all_provinces
    assert "SELECT 'full', 600, toDateTime(intDiv(toUInt32(minute), 600) * 600, 'UTC') AS b" in rows
    assert "FROM sms.rollup_minute WHERE 1 AND minute >= toDateTime(600, 'UTC') AND minute < toDateTime(1800, 'UTC')" in rows
    assert "FROM sms.rollup_level WHERE grain = 'carrier' AND level = 300 AND bucket >= toDateTime(600, 'UTC')" in rows
    assert "SELECT 'carrier', 600, arrayJoin([toDateTime(600, 'UTC'), toDateTime(1200, 'UTC')]), G" in generations


def test_level_sql_only_grains_with_the_level():
    built = level_sql(300, [60], "G")
    assert built is not None
    rows, generations = built
    assert "'full'" not in rows
    assert "grain = 'provider_carrier' AND level = 60" in rows
    assert generations.count("arrayJoin([toDateTime(0, 'UTC')])") == 3  # the three grains with a 300 s level


@pytest.mark.parametrize("level", [60, 7, 120])
def test_level_sql_none(level):
    assert level_sql(level, [60], "G") is None


def test_mark_and_mark_expiring():
    r = Rollups(recorder(), expire_after_seconds=600)
    r.mark([d(61_000, 125_000)])
    assert r.dirty == {60, 120}
    r.dirty.clear()
    r.mark_expiring(1_000)  # boundary: minute of 400 s = 360
    assert r.dirty == {300, 360}
    r.dirty.clear()
    r.mark_expiring(1_130)  # boundary 480: from 360 on
    assert r.dirty == {360, 420, 480}


def test_horizon():
    assert Rollups(recorder(), 600).horizon(10_000) is None
    assert Rollups(recorder(), 600, retention_days=1).horizon(100_000.5) == 100_000 - 86_400 + 3_600


def test_recover_reads_dirty_and_backfill():
    wh = Recorder(answers=[[(60,), (120,)], [(600,)]])
    r = Rollups(as_warehouse(wh), 600)
    r.recover()
    assert r.dirty == {60, 120}
    assert r._backfill == {600}
    assert "FROM sms.message_parts" in wh.queries[0]
    assert "grain = 'all_provinces' AND level = 60" in wh.queries[1]  # the newest grain (0015)


def test_recompute_statements_in_order():
    wh = Recorder()
    r = Rollups(as_warehouse(wh), 600)
    r.dirty = {120, 60}
    assert r.recompute() == 2
    assert r.dirty == set()
    assert r.recomputed_minutes == 2
    heads = [c.strip().splitlines()[0] for c in wh.commands]
    scratch = heads[0].split()[3]
    assert heads[0] == f"CREATE TEMPORARY TABLE {scratch} ENGINE = Memory AS"
    assert heads[1:6] == ["INSERT INTO sms.rollup_minute_raw", "INSERT INTO sms.rollup_error_minute_raw",
                          "INSERT INTO sms.undelivered_messages_raw", "INSERT INTO sms.rollup_level_raw",
                          "INSERT INTO sms.rollup_level_generations"]
    assert heads[6] == f"DROP TEMPORARY TABLE IF EXISTS {scratch}"
    levels = sorted({lv for _, lvs in GRAINS.values() for lv in lvs} - {60})
    assert len(wh.commands) == 7 + 2 * len(levels)
    assert "toDateTime(60, 'UTC'), toDateTime(120, 'UTC')" in wh.commands[0]


def test_recompute_failure_keeps_minutes_dirty_and_drops_scratch():
    wh = Recorder()
    wh.fail_on = "sms.rollup_error_minute_raw"
    r = Rollups(as_warehouse(wh), 600)
    r.dirty = {60}
    with pytest.raises(RuntimeError):
        r.recompute()
    assert r.dirty == {60}
    assert wh.commands[-1].startswith("DROP TEMPORARY TABLE IF EXISTS rollup_scratch_")
    assert r.recomputed_minutes == 0


def test_recompute_skips_minutes_past_retention(monkeypatch):
    monkeypatch.setattr(rollups.time, "time", lambda: 200_000.0)
    wh = Recorder()
    r = Rollups(as_warehouse(wh), 600, retention_days=1)
    horizon = r.horizon()
    assert horizon is not None
    r.dirty = {horizon - 60, horizon}
    r._backfill = {horizon - 120}
    assert r.recompute() == 1
    assert r._backfill == set()
    assert f"toDateTime({horizon}, 'UTC')" in wh.commands[0]
    assert f"toDateTime({horizon - 60}, 'UTC')" not in wh.commands[0]


def test_recompute_chunks_and_backfill():
    wh = Recorder()
    r = Rollups(as_warehouse(wh), 600)
    r.dirty = {60}
    r._backfill = {120, 180}
    assert r.recompute(chunk=2) == 3
    assert sum(c.lstrip().startswith("CREATE TEMPORARY TABLE") for c in wh.commands) == 2
    assert r._backfill == set()


def test_a_round_marks_the_minutes_conversions_change_and_resolves_the_others():
    """Minutes of direct conversions since the watermark (reaching back CONVERSION_MARGIN_SECONDS), then the
    resolved ones' minutes, inserted as parts; the scratch table dropped; the next round starts from this one."""
    wh = Recorder(answers=[[(120,)], [(180,), (240,)], [(2,)]])
    r = Rollups(as_warehouse(wh), 600)
    r.conversions(now_s=10_000.0)
    assert r.dirty == {120, 180, 240} and r.resolved_conversions == 2
    assert "toDateTime64(6400.000, 3, 'UTC')" in wh.queries[0]  # the first round: the whole horizon
    heads = [c.strip().splitlines()[0] for c in wh.commands]
    assert heads[0].startswith("CREATE TEMPORARY TABLE conversion_scratch_")
    assert heads[1].startswith("INSERT INTO sms.message_parts") and heads[2].startswith("DROP TEMPORARY TABLE")
    wh.answers = [[], []]
    r.conversions(now_s=10_030.0)
    assert f"toDateTime64({10_000 - rollups.CONVERSION_MARGIN_SECONDS}.000, 3, 'UTC')" in wh.queries[-2]
    assert [c.strip().splitlines()[0].split()[0] for c in wh.commands[3:]] == ["CREATE", "DROP"]  # nothing resolved
