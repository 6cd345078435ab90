"""The ceiling: a raw aiokafka consumer reads sms.sends.v1 and sms.receipts.v1 from the start,
decodes every record with `decode_message_events` and joins sends and receipts in a dict. No
faust, no state changelog, no output: the practical limit of a Python consumer on this machine.

`python -m bench.ceiling --bootstrap HOST:PORT --events N` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench.common import cpu_seconds, use_uvloop


async def consume(bootstrap: str, expect_events: int, timeout: float) -> dict[str, Any]:
    import os

    from aiokafka import AIOKafkaConsumer

    from sms_analytics.model import topics
    from sms_analytics.model.events import SendEvent, decode_message_events

    consumer = AIOKafkaConsumer(
        topics.SENDS, topics.RECEIPTS, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )
    started = time.monotonic()
    cpu0 = cpu_seconds(os.getpid()) or 0.0
    await consumer.start()
    pending: dict[tuple[str, str, str], list[Any]] = {}
    events = records = joined = 0
    first = last = None
    deadline = started + timeout
    try:
        while events < expect_events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"ceiling consumer read {events} of {expect_events} events in {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for batch in batches.values():
                if first is None:
                    first = time.monotonic()
                for record in batch:
                    records += 1
                    for event in decode_message_events(record.value):
                        events += 1
                        key = (event.provider, event.message_id, event.phone)
                        slot = pending.get(key)
                        if slot is None:
                            pending[key] = [event, None] if isinstance(event, SendEvent) else [None, event]
                            continue
                        if isinstance(event, SendEvent):
                            slot[0] = event
                        else:
                            slot[1] = event
                        if slot[0] is not None and slot[1] is not None:
                            joined += 1
                            del pending[key]
            last = time.monotonic()
    finally:
        await consumer.stop()
    seconds = (last or time.monotonic()) - started
    return {
        "events": events, "records": records, "joined": joined, "left_pending": len(pending),
        "seconds": seconds, "events_per_s": events / seconds if seconds else None,
        "seconds_from_first_record": (last - first) if (first and last) else None,
        "cpu_seconds": (cpu_seconds(os.getpid()) or 0.0) - cpu0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    use_uvloop()
    print(json.dumps(asyncio.run(consume(args.bootstrap, args.events, args.timeout))))


if __name__ == "__main__":
    main()
