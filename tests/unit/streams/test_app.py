"""streams.app.build_app on a dummy bootstrap, never started (no broker): the topics, the state
table, the agent, the timers and the assignment receiver it declares."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sms_analytics.model import topics
from sms_analytics.settings import AlertRules, CompensationPolicy
from sms_analytics.streams import agents
from sms_analytics.streams.alerts import Detector
from sms_analytics.streams.app import _bound, build_app
from sms_analytics.streams.state import TABLE

POLICY = CompensationPolicy(after_ms=600_000, interval_ms=1_800_000, scan_seconds=2.0, forget_after_ms=3_600_000)


def build(tmp_path, app_id, **kw):
    return build_app(app_id=app_id, bootstrap="127.0.0.1:1", partitions=3, replication=1, data_dir=str(tmp_path),
                     batch=100, within=0.5, compensation_policy=POLICY, **kw)


def streams_of(app):
    return app.agents["sms_join"].fun.args[0]


def test_declarations_with_alerts(tmp_path):
    app, stats = build(tmp_path, "app-unit-a", rules=AlertRules.packaged(), raw_phone=True)
    assert app.conf.id == "app-unit-a"
    assert [str(u) for u in app.conf.broker] == ["kafka://127.0.0.1:1"]
    assert app.conf.topic_partitions == 3
    assert app.conf.web_enabled is False
    assert list(app.agents) == ["sms_join", "sms_conversions"]  # conversions feed the conversion-rate alert
    agent = app.agents["sms_join"]
    assert agent.channel.topics == (topics.SENDS, topics.RECEIPTS)
    assert agent.fun.func is agents.join
    assert app.agents["sms_conversions"].channel.topics == (topics.CONVERSIONS,)
    assert app.agents["sms_conversions"].fun.func is agents.conversions
    assert list(app.tables) == [TABLE]
    table = app.tables[TABLE]
    assert table.partitions == 3
    assert table.changelog_topic.get_topic_name() == f"app-unit-a-{TABLE}-changelog"
    streams = streams_of(app)
    assert streams.stats is stats
    assert isinstance(stats.detector, Detector)
    assert streams.detector is stats.detector
    assert streams.table is table
    assert (streams.batch, streams.within, streams.raw_phone) == (100, 0.5, True)
    assert [t.topics for t in (streams.deliveries, streams.dead, streams.requests, streams.alerts)] == [
        (topics.DELIVERIES,), (topics.DEADLETTER,), (topics.COMPENSATION,), (topics.ALERTS,)]
    assert all(t.partitions == 3 for t in (streams.deliveries, streams.dead, streams.requests, streams.alerts))
    assert [t.__name__ for t in app._app_tasks] == ["scan", "evaluate_alerts"]


def test_no_alert_timer_without_rules(tmp_path):
    app, stats = build(tmp_path, "app-unit-b")
    assert stats.detector is None
    assert streams_of(app).detector is None
    assert streams_of(app).raw_phone is False
    assert [t.__name__ for t in app._app_tasks] == ["scan"]


def test_two_apps_in_one_process_have_their_own_parts(tmp_path):
    app1, stats1 = build(tmp_path / "1", "app-unit-c")
    app2, stats2 = build(tmp_path / "2", "app-unit-d")
    assert stats1 is not stats2
    assert streams_of(app1).store is not streams_of(app2).store


async def test_assignment_signal_sets_partitions(tmp_path):
    app, stats = build(tmp_path, "app-unit-e")
    tp = SimpleNamespace
    await app.on_partitions_assigned.send([tp(topic=topics.RECEIPTS, partition=1), tp(topic=topics.SENDS, partition=0),
                                           tp(topic=topics.DELIVERIES, partition=2)])
    assert stats.partitions == [0, 1]


def test_bound_keeps_name_and_binds():
    def fun(a, b, c=0):
        """Doc."""
        return (a, b, c)

    bound = _bound(fun, 1)
    assert (bound.__name__, bound.__doc__, bound.__qualname__) == ("fun", "Doc.", fun.__qualname__)
    assert bound(2, c=3) == (1, 2, 3)
    assert not hasattr(bound, "__wrapped__")
    with pytest.raises(TypeError):
        bound()
