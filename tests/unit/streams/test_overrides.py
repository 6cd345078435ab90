"""The worker's consumer never commits past a record no stream acknowledged (streams/overrides.py):
faust's own head-gap check lets one unacknowledged record at the committed offset through."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import IntervalTree

from sms_analytics.streams import app as _app  # noqa: F401 - faust's modules load in the app's order
from sms_analytics.streams.overrides import _Consumer

P0 = TP("sms.sends.v1", 0)


def consumer(kind: type, committed: int | None, acked: list[int], gap: tuple[int, int] | None = None) -> Any:
    """A consumer's offset bookkeeping alone (what `_new_offset` reads), without a broker."""
    c = object.__new__(kind)
    c._acked = defaultdict(list, {P0: sorted(acked)})
    c._acked_index = defaultdict(set, {P0: set(acked)})
    c._gap = defaultdict(IntervalTree)
    if gap is not None:
        c._gap[P0].addi(*gap)
    c._committed_offset = defaultdict(lambda: None, {P0: committed})
    return c


def test_faust_alone_commits_past_one_unacknowledged_record() -> None:
    """The hole itself: record 100 never acknowledged, 101..110 acknowledged, committed 100."""
    assert FaustConsumer._new_offset(consumer(_Consumer, 100, list(range(101, 111))), P0) == 111


@pytest.mark.parametrize("committed, acked, gap, expected", [
    (100, list(range(101, 111)), None, None),  # record 100 unacknowledged: hold
    (100, list(range(102, 111)), None, None),  # two unacknowledged (faust holds too)
    (100, list(range(100, 111)), None, 111),  # a run from the committed offset
    (100, [100, 101, 105], None, 102),  # up to the first hole
    (100, list(range(101, 111)), (100, 101), 111),  # offset 100 known not to exist (a gap faust saw)
    (None, list(range(5, 9)), None, 9),  # nothing committed yet: faust's rule
])
def test_a_commit_starts_at_the_committed_offset(committed: int | None, acked: list[int],
                                                 gap: tuple[int, int] | None, expected: int | None) -> None:
    assert _Consumer._new_offset(consumer(_Consumer, committed, acked, gap), P0) == expected
