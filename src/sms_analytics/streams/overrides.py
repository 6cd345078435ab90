"""faust, adjusted for this worker: consumers whose fetches wait KAFKA_FETCH_MAX_WAIT_MS instead of
faust's fixed 1.5 s, a table manager without faust's one-second sleep at start, and the garbage
collector tuned for the join's allocations. Where this ends: faust's and Python's machinery only;
what the app declares is app.py's."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import faust
import structlog
from faust.transport.drivers import aiokafka as aiokafka_driver

log = structlog.get_logger(__name__)


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 1500  # faust's fixed value; set per app by transport()

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust passes fetch_max_wait_ms=1500 with no setting to change it; aiokafka reads this
        # attribute when the consumer starts (it hands it to its fetcher then).
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


class _Consumer(aiokafka_driver.Consumer):
    consumer_thread: type[_ConsumerThread] = _ConsumerThread  # set per app by transport()

    def _new_consumer_thread(self) -> Any:
        return self.consumer_thread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for tp: faust's, never past a record no stream acknowledged.

        faust commits the first consecutive run of acknowledged offsets, and refuses to when the
        run starts above the committed offset, but only by more than one (`min(acked) - committed
        > 1`): with the record at the committed offset unacknowledged and the next ones
        acknowledged, it committed past that record, whose events were then never joined (a worker
        SIGKILLed then restarted lost exactly one record of sends so, under load). Here a run must
        start at the committed offset, or at an offset the consumer knows does not exist (faust's
        gaps).

        A hold that lasts is a record faust dropped: its agent takes a partition's records in
        order, so once later ones are acknowledged the one at the committed offset will not come
        (faust drops the buffered records of a rebalance and fetches on from its position). After
        REFETCH_AFTER_SECONDS the partition is read again from the committed offset (`_refetch`);
        the join ignores what it has already seen, so the records read twice change nothing."""
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        holds: dict[Any, list[float]] = self.__dict__.setdefault("_holds", {})
        if acked and committed is not None and min(acked) > committed and not self._gap[tp].at(committed):
            now = time.monotonic()
            hold = holds.get(tp)
            if hold is None or hold[0] != committed:  # once per hold, not at every commit
                holds[tp] = [committed, now]
                log.warning("worker.commit_held", topic=tp.topic, partition=tp.partition, committed=committed,
                            first_acknowledged=min(acked))
            elif now - hold[1] >= REFETCH_AFTER_SECONDS:
                hold[1] = now  # and again after as long, if the record still does not come
                self._refetch(tp, committed, min(acked))
            return None
        holds.pop(tp, None)
        return super()._new_offset(tp)

    def _refetch(self, tp: Any, committed: int, first_acknowledged: int) -> None:
        log.warning("worker.commit_held_refetch", topic=tp.topic, partition=tp.partition, committed=committed,
                    first_acknowledged=first_acknowledged)
        tasks: set[asyncio.Task[None]] = self.__dict__.setdefault("_refetches", set())
        task = asyncio.get_running_loop().create_task(self._seek_back(tp, committed))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _seek_back(self, tp: Any, offset: int) -> None:
        try:  # faust's seek: the fetch position and the read offset its drain filters on
            await self.seek_wait({tp: offset})
        except Exception as exc:  # noqa: BLE001  (e.g. the partition was revoked meanwhile: nothing to read)
            log.warning("worker.refetch_failed", topic=tp.topic, partition=tp.partition,
                        error=f"{type(exc).__name__}: {exc}"[:200])


REFETCH_AFTER_SECONDS = 5.0


def transport(app: faust.App, fetch_max_wait_ms: int) -> Any:
    """faust's aiokafka transport, with consumers whose fetches wait at most fetch_max_wait_ms
    (classes made per app: several apps, each with its own wait, may share a process)."""
    thread = type("ConsumerThread", (_ConsumerThread,), {"fetch_max_wait_ms": fetch_max_wait_ms})
    consumer = type("Consumer", (_Consumer,), {"consumer_thread": thread})
    kind = type("Transport", (aiokafka_driver.Transport,), {"Consumer": consumer})
    return kind(app.conf.broker_consumer, app)


class TableManager(faust.tables.TableManager):
    """faust's table manager without its one-second sleep at start (a grace period for tables
    declared after the app starts): this app adds its only table in build_app, before the start,
    and every worker start (and so every failover) is one second shorter."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def tune_gc() -> None:
    """For a worker process, after its start: the join allocates short-lived containers by the
    million (records, lists, dicts per batch) while its long-lived state is bytes the collector
    never visits. With Python's default thresholds (700, 10, 10) collections ran every few hundred
    events and re-scanned the older generations (7% of the worker's samples in a join run);
    objects alive after the start are frozen out of collection, and the youngest generation is
    collected every 50,000 allocations. Called again after a new worker replaced an old one (the
    embedded broker's rotation), it first unfreezes: the old worker's objects, frozen by the last
    call, would otherwise never be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
