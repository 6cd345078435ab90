"""What the agents and timers of one faust app share: its counters (`JoinStats`, read by the
runtime, the metrics and the health checks) and its handles (`Streams`: topics, the state table,
the alert detector), built by app.py's `build_app` and bound to the module-level agents there.
Where this ends: no faust declarations and no processing; a plain record of one app's parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sms_analytics.streams.alerts import Detector
from sms_analytics.streams.state import MessageStateStore


@dataclass
class JoinStats:
    events: int = 0
    undecodable: int = 0
    emitted: int = 0
    compensation_requests: int = 0
    forgotten: int = 0
    alerts: int = 0
    detector: Any = None
    busy_seconds: float = 0.0  # time spent processing batches (not waiting for input)
    first_event_ms: int = 0
    last_event_ms: int = 0
    partitions: list[int] = field(default_factory=list)  # source partitions this worker owns
    # Per (topic, partition): the last source offset whose effects the broker has acknowledged, and
    # the last offset this worker produced (deliveries, changelog). The embedded mode's broker
    # rotation waits on them (runtime.py): a drained worker has reached what was forwarded to it.
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    produced: dict[tuple[str, int], int] = field(default_factory=dict)

    def carry(self, previous: JoinStats) -> None:
        """Continue the counts of the worker this one replaces (the embedded broker's rotation);
        offsets and partitions belong to the old broker and are not carried."""
        for name in ("events", "undecodable", "emitted", "compensation_requests", "forgotten", "alerts",
                     "busy_seconds", "first_event_ms", "last_event_ms"):
            setattr(self, name, getattr(previous, name))

    @property
    def capacity(self) -> float:
        """Events per second of processing time: what the join sustains when never idle."""
        return self.events / self.busy_seconds if self.busy_seconds else 0.0


@dataclass(frozen=True)
class Streams:
    """One app's parts, as its agents and timers use them (faust topics and table typed Any: faust's
    own types are not precise enough to help)."""

    stats: JoinStats
    table: Any  # the MessageStateTable; its changelog topic takes the batch records
    store: MessageStateStore
    deliveries: Any
    dead: Any
    requests: Any  # compensation requests
    alerts: Any
    detector: Detector | None
    batch: int  # events per batch the join takes ...
    within: float  # ... or what arrives within this many seconds
    raw_phone: bool  # deliveries carry the raw number (SMS_STORE_RAW_PHONE)
