"""Dead letters counted per endpoint and reason class.

A dead letter's reason is free text that may quote the input (a phone number, a message id), so it
never becomes a label: it is mapped to one of REASON_CLASSES, a fixed set. The endpoint is one of the
receiver's paths, a pull feed (`feed:<name>`) or the stream (`streams.join`), all fixed by the code
and the configuration; anything else is counted as `other`.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

# (class, phrases of the reasons the receivers and parsers write, sources/base/fields.py, model/phone.py,
# model/times.py, sources/base/provider.py, sources/receiver.py); the first class with a phrase in the
# reason wins.
REASON_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("internal_error", ("internal error while parsing",)),
    ("body_too_large", ("body larger than",)),
    ("too_many_records", ("too many records",)),
    ("unreadable_body", ("not valid json", "body could not be read")),
    ("undecodable_event", ("undecodable",)),
    ("timestamp_out_of_window", ("timestamp out of window", "outside the accepted window")),
    ("bad_phone", ("phone ", "nationcode")),
    ("bad_time", ("time ", "epoch", "iso-8601", "yyyymmdd", "yyyy-mm-dd")),
    ("missing_field", ("missing",)),
    ("bad_shape", ("expected", "must be", "must both be", "needs ", "longer than")),
)
REASON_CLASSES: tuple[str, ...] = (*(name for name, _ in REASON_RULES), "other")
_ENDPOINT = re.compile(r"(/v1/sends(/[a-z]+)?|/v1/grafana/alerts|/callbacks/[a-z]+/[a-z-]+|feed:[A-Za-z0-9_.:-]{1,60}|streams\.[a-z_]+)")


def reason_class(reason: str) -> str:
    """The class of a free-text reason (one of REASON_CLASSES)."""
    text = reason.casefold()
    for name, phrases in REASON_RULES:
        if any(phrase in text for phrase in phrases):
            return name
    return "other"


def endpoint_label(endpoint: str) -> str:
    """The endpoint as a label: a path, feed or stream name of the code's own, else `other`."""
    return endpoint if _ENDPOINT.fullmatch(endpoint) else "other"


class DeadLetters:
    """Dead letters the broker acknowledged, per (endpoint label, reason class)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def count(self, endpoint: str, reason: str, n: int = 1) -> None:
        self.counts[(endpoint_label(endpoint), reason_class(reason))] += n

    def watch(self, future: asyncio.Future[Any], endpoint: str, reason: str) -> None:
        """Count the dead letter once its send succeeds (a failed one is retried by the provider)."""
        key = (endpoint_label(endpoint), reason_class(reason))

        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                self.counts[key] += 1

        future.add_done_callback(done)
