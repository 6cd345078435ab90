"""The pure join (`streams/join.py`): one message's sends and receipts in any order, any duplicates."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sms_analytics.model.events import Delivery, ReceiptEvent, SendEvent
from sms_analytics.streams.join import apply, failure_category, is_final

IDENT: dict[str, str] = dict(
    provider="kx", message_id="1222015900000109761867", phone="+8613812341234", phone_hash="a" * 64,
    phone_masked="138****1234", carrier="mobile", country_code="86",
)
SENT = 1_700_000_000_000
FAILURES = (("UNDELIV", "短信接收失败"), ("EXPIRED", "短信接收失败"), ("REJECTD", "客户接收失败"), ("MK:0001", "空号"))


def send(sent_at: int = SENT, *, ok: bool = True, code: str = "", message: str = "") -> SendEvent:
    return SendEvent(**IDENT, sent_at_ms=sent_at, received_at_ms=sent_at + 5, template="T1", sign="邦邦快递",
                     segments=2, out_id="order-7", submit_ok=ok, submit_code=code, submit_message=message)


def receipt(delivered: bool, reported_at: int, code: str | None = None, message: str | None = None,
            sent_at: int | None = None, segments: int | None = None) -> ReceiptEvent:
    if code is None:
        code, default_message = ("DELIVRD", "成功") if delivered else FAILURES[(reported_at // 1000) % len(FAILURES)]
        message = default_message if message is None else message
    return ReceiptEvent(**IDENT, delivered=delivered, error_code=code, error_message=message or "",
                        reported_at_ms=reported_at, received_at_ms=reported_at + 60_000, sent_at_ms=sent_at,
                        segments=segments)


def fold(events: Iterable[SendEvent | ReceiptEvent]) -> tuple[Delivery, list[bool]]:
    state: Delivery | None = None
    changes = []
    for now, event in enumerate(events, start=1):
        state, changed = apply(state, event, now)
        changes.append(changed)
    assert state is not None
    return state, changes


def outcome(state: Delivery) -> dict[str, Any]:
    return dict(
        status=state.status, stage=state.stage, error_code=state.error_code, error_message=state.error_message,
        failure_category=state.failure_category, outcome_at_ms=state.outcome_at_ms,
        receipt_ids=sorted(state.receipt_ids), sent_at_ms=state.sent_at_ms, has_send=state.has_send,
        latency_ms=state.latency_ms, reported_at_ms=state.reported_at_ms, template=state.template,
        sign=state.sign, segments=state.segments, receipt_segments=state.receipt_segments, out_id=state.out_id,
        final=is_final(state),
    )


# A receipt: delivered flag and report time (seconds around the send, some before it, many ties).
# The failure code is a function of the report time, so two receipts with the same (time, flag) are
# the same receipt (same id); distinct receipts never tie on (time, flag) with different codes.
# Some receipts report the message's parts (Alibaba sms_size), always the same number.
receipts_st = st.builds(
    lambda delivered, offset: receipt(delivered, SENT + offset * 1000, segments=3 if offset % 2 else None),
    st.booleans(), st.integers(min_value=-3, max_value=8),
)


@st.composite
def message_events(draw: st.DrawFn) -> tuple[SendEvent, list[ReceiptEvent], list[SendEvent | ReceiptEvent]]:
    the_send = send()
    receipts = draw(st.lists(receipts_st, max_size=4))
    duplicates = draw(st.lists(st.sampled_from([the_send, *receipts]), max_size=4))
    order = draw(st.permutations([the_send, *receipts, *duplicates]))
    return the_send, receipts, order


@settings(max_examples=400, deadline=None)
@given(message_events())
def test_final_state_is_independent_of_order_and_duplicates(
    case: tuple[SendEvent, list[ReceiptEvent], list[SendEvent | ReceiptEvent]],
) -> None:
    the_send, receipts, order = case
    state, _changes = fold(order)

    # The same events in a canonical order (send first, no duplicates) and reversed agree.
    canonical, _ = fold([the_send, *receipts])
    backwards, _ = fold(reversed(order))
    assert outcome(state) == outcome(canonical) == outcome(backwards)

    distinct = {r.receipt_id: r for r in receipts}
    assert sorted(state.receipt_ids) == sorted(distinct)
    assert len(state.receipt_ids) == len(distinct)
    assert state.has_send and state.sent_at_ms == SENT
    assert (state.template, state.sign, state.segments, state.out_id) == ("T1", "邦邦快递", 2, "order-7")
    assert state.receipt_segments == (3 if any(r.segments for r in receipts) else None)
    if not distinct:
        assert (state.status, state.stage, state.outcome_at_ms, state.error_code) == ("pending", "", 0, "")
        assert state.latency_ms is None and state.reported_at_ms is None
        assert not is_final(state)
        return
    winner = max(distinct.values(), key=lambda r: (r.reported_at_ms, r.delivered))
    assert state.status == ("delivered" if winner.delivered else "failed")
    assert state.stage == "receipt"
    assert state.outcome_at_ms == state.reported_at_ms == winner.reported_at_ms
    assert (state.error_code, state.error_message) == (winner.error_code, winner.error_message)
    assert state.failure_category == failure_category(state, winner.delivered, winner.error_code, winner.error_message, "receipt")
    assert state.latency_ms == max(0, winner.reported_at_ms - SENT)
    assert state.latency_ms is not None and state.latency_ms >= 0
    assert is_final(state)


@settings(max_examples=300, deadline=None)
@given(message_events())
def test_duplicates_are_unchanged_and_new_events_are_changes(
    case: tuple[SendEvent, list[ReceiptEvent], list[SendEvent | ReceiptEvent]],
) -> None:
    _, _, order = case
    state: Delivery | None = None
    seen_receipts: set[str] = set()
    seen_send = False
    last_change = 0
    for now, event in enumerate(order, start=1):
        first = state is None
        if isinstance(event, ReceiptEvent):
            expect_change = event.receipt_id not in seen_receipts
            seen_receipts.add(event.receipt_id)
        else:
            expect_change = not seen_send
            seen_send = True
        before = None if state is None else outcome(state)
        state, changed = apply(state, event, now)
        assert changed is (expect_change or first)
        if changed:
            last_change = now
        else:
            assert outcome(state) == before  # an exact duplicate changes nothing
        assert state.updated_at_ms == last_change
    assert state is not None and len(state.receipt_ids) == len(seen_receipts)


@settings(max_examples=200, deadline=None)
@given(
    sent_offset=st.integers(min_value=0, max_value=10**9),
    failure=st.sampled_from([
        ("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1"), ("LimitExceeded.PhoneNumberDailyLimit", "单个手机号日下发短信条数超过设定的上限"),
        ("11", "短信内容过长"), ("6", "sign 校验失败"), ("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"),
    ]),
    copies=st.integers(min_value=1, max_value=4),
    data=st.data(),
)
def test_submit_failure_is_failed_at_submit_without_latency(
    sent_offset: int, failure: tuple[str, str], copies: int, data: st.DataObject,
) -> None:
    code, message = failure
    sent_at = SENT + sent_offset
    events = data.draw(st.permutations([send(sent_at, ok=False, code=code, message=message)] * copies))
    state, changes = fold(events)
    assert changes == [True] + [False] * (copies - 1)  # a replayed send is not a change
    assert (state.status, state.stage, state.outcome_at_ms) == ("failed", "submit", sent_at)
    assert (state.error_code, state.error_message) == (code, message)
    assert state.failure_category == failure_category(state, False, code, message, "submit")
    assert state.reported_at_ms is None
    assert state.latency_ms is None
    assert state.receipt_ids == []
    assert is_final(state)


def test_every_permutation_gives_the_same_state() -> None:
    events = [
        send(),
        receipt(False, SENT + 4000),  # EXPIRED
        receipt(True, SENT + 4000),  # same time: the delivery wins
        receipt(False, SENT + 2000),
        receipt(False, SENT + 4000),  # an exact duplicate
    ]
    states = {repr(outcome(fold(order)[0])) for order in itertools.permutations(events)}
    assert len(states) == 1
    state, _ = fold(events)
    assert (state.status, state.error_code, state.outcome_at_ms, state.latency_ms) == ("delivered", "DELIVRD", SENT + 4000, 4000)
    assert len(state.receipt_ids) == 3


def test_receipt_before_send_joins() -> None:
    state, changed = apply(None, receipt(True, SENT + 7000), now_ms=10)
    assert changed
    assert (state.status, state.stage, state.has_send, state.sent_at_ms) == ("delivered", "receipt", False, None)
    assert state.latency_ms is None  # no send time yet
    assert not is_final(state)
    assert state.updated_at_ms == 10

    state, changed = apply(state, send(), now_ms=20)
    assert changed
    assert (state.status, state.has_send, state.sent_at_ms, state.template, state.segments) == ("delivered", True, SENT, "T1", 2)
    assert state.latency_ms == 7000
    assert is_final(state)
    assert state.updated_at_ms == 20
    assert (state.provider, state.message_id, state.phone, state.phone_masked) == (
        "kx", "1222015900000109761867", "+8613812341234", "138****1234")


def test_receipt_without_send_takes_the_receipts_own_send_time() -> None:
    state, _ = apply(None, receipt(False, SENT + 9000, sent_at=SENT + 1000), now_ms=1)
    assert (state.receipt_sent_at_ms, state.sent_at_ms) == (SENT + 1000, None)
    assert state.latency_ms == 8000
    state, _ = apply(state, send(), now_ms=2)
    assert state.latency_ms == 9000  # the send's own time takes precedence once it is known


def test_delivery_after_an_earlier_failure_ends_delivered() -> None:
    state, _ = fold([send(), receipt(False, SENT + 3000, "UNDELIV", "短信接收失败")])
    assert (state.status, state.error_code, state.failure_category) == ("failed", "UNDELIV", "carrier_error")
    state, changed = apply(state, receipt(True, SENT + 60_000, "DELIVRD", "成功"), now_ms=99)
    assert changed
    assert (state.status, state.stage, state.error_code, state.error_message, state.failure_category) == (
        "delivered", "receipt", "DELIVRD", "成功", "delivered")
    assert state.outcome_at_ms == SENT + 60_000
    assert state.latency_ms == 60_000
    assert len(state.receipt_ids) == 2


def test_a_late_arriving_earlier_failure_does_not_override_a_delivery() -> None:
    state, _ = fold([send(), receipt(True, SENT + 5000)])
    state, changed = apply(state, receipt(False, SENT + 4000, "EXPIRED", "短信接收失败"), now_ms=50)
    assert changed  # the receipt is counted ...
    assert len(state.receipt_ids) == 2
    assert (state.status, state.error_code, state.outcome_at_ms, state.latency_ms) == (  # ... but does not win
        "delivered", "DELIVRD", SENT + 5000, 5000)


@pytest.mark.parametrize("failure_first", [True, False])
def test_at_equal_report_times_a_delivery_beats_a_failure(failure_first: bool) -> None:
    failed, delivered = receipt(False, SENT + 5000, "UNDELIV"), receipt(True, SENT + 5000)
    state, _ = fold([send(), failed, delivered] if failure_first else [send(), delivered, failed])
    assert (state.status, state.error_code) == ("delivered", "DELIVRD")


def test_receipt_segments_are_kept_and_not_erased_by_a_receipt_without_them() -> None:
    state, _ = fold([receipt(False, SENT + 1000, "UNDELIV", segments=3), receipt(True, SENT + 2000)])
    assert (state.receipt_segments, state.segments, state.status) == (3, None, "delivered")
    state, _ = apply(state, send(), now_ms=9)
    assert (state.receipt_segments, state.segments) == (3, 2)


def test_a_receipt_before_the_send_time_has_zero_latency() -> None:
    state, _ = fold([send(), receipt(True, SENT - 2000)])
    assert state.reported_at_ms == SENT - 2000
    assert state.latency_ms == 0


def test_exact_duplicate_receipt_is_not_a_change() -> None:
    r = receipt(False, SENT + 1000, "UNDELIV")
    state, _ = fold([send(), r])
    state, changed = apply(state, receipt(False, SENT + 1000, "UNDELIV"), now_ms=77)  # an equal copy
    assert changed is False
    assert state.updated_at_ms == 2
    assert len(state.receipt_ids) == 1


def test_replayed_send_is_not_a_change_but_a_new_send_time_is() -> None:
    state, _ = fold([send()])
    assert apply(state, send(), now_ms=5) == (state, False)
    state, changed = apply(state, send(SENT + 1), now_ms=6)
    assert changed and state.sent_at_ms == SENT + 1


def test_tied_failures_pick_the_same_code_in_any_order() -> None:
    a = receipt(False, SENT + 5000, "UNDELIV", "短信接收失败")
    b = receipt(False, SENT + 5000, "EXPIRED", "短信接收失败")
    ab, _ = fold([send(), a, b])
    ba, _ = fold([send(), b, a])
    assert ab.error_code == ba.error_code
    assert ab.failure_category == ba.failure_category


@settings(max_examples=60, deadline=None)
@given(
    plans=st.lists(st.tuples(st.booleans(), st.lists(st.tuples(st.booleans(), st.integers(-5, 30)), max_size=3)),
                   min_size=1, max_size=25),
    data=st.data(),
)
def test_counts_are_conserved_over_many_interleaved_messages(plans: list[Any], data: st.DataObject) -> None:
    """Many messages' events, interleaved and duplicated as a partition delivers them, folded the way the
    agent does (a table of states keyed by message, final states forgotten and re-created on late
    events): every message ends with the same status as its own fold, and the status counts add up."""
    events: list[tuple[str, SendEvent | ReceiptEvent]] = []
    alone: dict[str, str] = {}
    for i, (has_send, receipts) in enumerate(plans):
        ident = {**IDENT, "message_id": f"m{i}"}
        mine: list[SendEvent | ReceiptEvent] = [SendEvent(**ident, sent_at_ms=SENT, received_at_ms=SENT)] if has_send else []
        for ok, offset in receipts:
            code, text = ("DELIVRD", "成功") if ok else ("UNDELIV", "短信接收失败")
            r = ReceiptEvent(**ident, delivered=ok, error_code=code, error_message=text,
                             reported_at_ms=SENT + offset * 1000, received_at_ms=SENT)
            mine += [r, r] if data.draw(st.booleans()) else [r]
        alone[f"m{i}"] = fold(mine)[0].status if mine else "none"
        events += [(f"m{i}", e) for e in mine]
    interleaved = data.draw(st.permutations(events))
    table: dict[str, Delivery] = {}
    rank = {"pending": 0, "failed": 1, "delivered": 2}
    best: dict[str, tuple[Any, ...]] = {}  # what the warehouse keeps: max((outcome_at, rank, ...)) per message
    for now, (key, event) in enumerate(interleaved, start=1):
        state, changed = apply(table.get(key), event, now)
        if changed:
            candidate = (state.outcome_at_ms, rank[state.status], state.stage, state.error_code, state.status)
            best[key] = max(best.get(key, candidate), candidate)
        if is_final(state):
            table.pop(key, None)
        else:
            table[key] = state
    merged = {k: v[-1] for k, v in best.items()}
    expected = {k: v for k, v in alone.items() if v != "none"}
    assert merged == expected
    assert sum(Counter(merged.values()).values()) == len(expected)


def test_the_stream_forgets_states_older_than_expire_after() -> None:
    from sms_analytics.settings import CompensationPolicy
    from sms_analytics.streams.compensation import due_for_compensation, should_forget

    policy = CompensationPolicy(after_ms=600_000, interval_ms=1_800_000, scan_seconds=30,
                                forget_after_ms=72 * 3_600_000)
    waiting, _ = fold([send()])
    receipt_only, _ = fold([receipt(True, SENT + 5000)])
    assert not should_forget(waiting, SENT + 71 * 3_600_000, policy)
    assert should_forget(waiting, SENT + 73 * 3_600_000, policy)
    assert not should_forget(receipt_only, receipt_only.updated_at_ms + 3_600_000, policy)
    assert should_forget(receipt_only, receipt_only.updated_at_ms + 73 * 3_600_000, policy)
    # Compensation: only Alibaba/Tencent, only past `after`, once per interval.
    ali = Delivery(**{**IDENT, "provider": "aliyun"}, has_send=True, sent_at_ms=SENT)
    assert not due_for_compensation(ali, SENT + 500_000, policy)
    assert due_for_compensation(ali, SENT + 700_000, policy)
    ali.compensation_asked_ms = SENT + 700_000
    assert not due_for_compensation(ali, SENT + 1_000_000, policy)
    assert due_for_compensation(ali, SENT + 2_600_000, policy)
    assert not due_for_compensation(waiting, SENT + 700_000, policy)  # KX has no per-message query
