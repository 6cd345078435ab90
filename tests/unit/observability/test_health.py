"""observability/health.py: the verdict /healthz answers with, from readiness and the sink's lag."""

from __future__ import annotations

from types import SimpleNamespace

from sms_analytics.observability.health import runtime_verdict, sink_lag_seconds, verdict


def test_sink_lag() -> None:
    assert sink_lag_seconds(None, now=10_000) == 0.0
    assert sink_lag_seconds(4_000, now=10_000) == 6.0
    assert sink_lag_seconds(12_000, now=10_000) == 0.0  # a clock ahead is no lag


def test_ready_and_within_the_lag_is_ok() -> None:
    v = verdict({"broker": True, "sink": True}, 1.5, 60.0)
    assert v.ok and v.status == "ok" and v.reasons == []
    assert v.body() == {"status": "ok", "ready": True, "components": {"broker": True, "sink": True}, "reasons": [],
                        "sink": {"lag_seconds": 1.5, "max_lag_seconds": 60.0}}


def test_a_component_not_ready_is_starting() -> None:
    v = verdict({"broker": True, "sink": False}, None, 60.0)
    assert not v.ok and v.status == "starting" and v.reasons == ["sink not ready"]
    assert "sink" not in v.body()  # no sink in this process: no lag shown


def test_a_lagging_sink_is_lagging_with_the_setting_named() -> None:
    v = verdict({"sink": True}, 61.0, 60.0)
    assert v.status == "lagging"
    [reason] = v.reasons
    assert reason.startswith("sink lag 61 s > 60 s") and "SMS_HEALTH_MAX_SINK_LAG_SECONDS" in reason


def test_runtime_verdict_reads_readiness_sink_and_setting() -> None:
    settings = SimpleNamespace(sms_health_max_sink_lag_seconds=30.0)
    without_sink = SimpleNamespace(sink=None, readiness=lambda: {"receiver": True}, settings=settings)
    assert runtime_verdict(without_sink).sink_lag_seconds is None
    idle_sink = SimpleNamespace(oldest_unwritten_ms=lambda: None)
    v = runtime_verdict(SimpleNamespace(sink=idle_sink, readiness=lambda: {"sink": True}, settings=settings))
    assert v.ok and v.sink_lag_seconds == 0.0 and v.max_sink_lag_seconds == 30.0
