"""The health verdict behind every `/healthz`: the components' readiness, and the sink's lag.

Sink lag is the age of the oldest row the sink has read from Kafka and not yet written to the
warehouse (its Kafka timestamp, see sinks/writer.py). Past SMS_HEALTH_MAX_SINK_LAG_SECONDS the
process answers 503 and names the reason, so an orchestrator or a probe sees a sink that cannot
write (warehouse down, inserts failing) even though every component is up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sms_analytics.model.times import now_ms


@dataclass(frozen=True)
class Verdict:
    components: dict[str, bool]
    reasons: list[str] = field(default_factory=list)
    sink_lag_seconds: float | None = None  # None: no sink in this process
    max_sink_lag_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "lagging" if all(self.components.values()) else "starting"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "ready": self.ok, "components": self.components,
                               "reasons": self.reasons}
        if self.sink_lag_seconds is not None:
            out["sink"] = {"lag_seconds": round(self.sink_lag_seconds, 3),
                           "max_lag_seconds": self.max_sink_lag_seconds}
        return out


def sink_lag_seconds(oldest_unwritten_ms: int | None, now: int | None = None) -> float:
    """Seconds since the oldest unwritten row was produced; 0 when nothing is unwritten."""
    if oldest_unwritten_ms is None:
        return 0.0
    return max(0.0, ((now if now is not None else now_ms()) - oldest_unwritten_ms) / 1000)


def verdict(components: dict[str, bool], sink_lag: float | None, max_sink_lag: float) -> Verdict:
    reasons = [f"{name} not ready" for name, ready in components.items() if not ready]
    if sink_lag is not None and sink_lag > max_sink_lag:
        reasons.append(f"sink lag {sink_lag:.0f} s > {max_sink_lag:g} s: the oldest row read from Kafka is not yet "
                       "written to the warehouse (SMS_HEALTH_MAX_SINK_LAG_SECONDS)")
    return Verdict(components=components, reasons=reasons, sink_lag_seconds=sink_lag, max_sink_lag_seconds=max_sink_lag)


def runtime_verdict(runtime: Any) -> Verdict:
    """The verdict of a Runtime (sms_analytics.runtime): its readiness and its sink, if it has one."""
    sink = runtime.sink
    lag = sink_lag_seconds(sink.oldest_unwritten_ms()) if sink is not None else None
    return verdict(runtime.readiness(), lag, runtime.settings.sms_health_max_sink_lag_seconds)
