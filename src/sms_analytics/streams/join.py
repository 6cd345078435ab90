"""The join of sends and receipts, as a pure function over one message's state.

- A send and its receipt meet in either order.
- The newest receipt by report time wins; at equal times a delivery beats a failure.
- The same receipt twice (same message, code and report time) counts once.
- A send rejected at submit is failed with stage `submit`.
"""

from __future__ import annotations

from functools import lru_cache

from sms_analytics.model.events import STATUS_RANK, Delivery, ReceiptEvent, SendEvent
from sms_analytics.model.knowledge import KnowledgeBase


def new_state(event: SendEvent | ReceiptEvent) -> Delivery:
    return Delivery(
        provider=event.provider, message_id=event.message_id, phone=event.phone,
        phone_hash=event.phone_hash, phone_masked=event.phone_masked, carrier=event.carrier,
        country_code=event.country_code, province=event.province, city=event.city,
    )


def apply(state: Delivery | None, event: SendEvent | ReceiptEvent, now_ms: int) -> tuple[Delivery, bool]:
    """Merge one event into the message's state; returns (state, changed)."""
    current = state if state is not None else new_state(event)
    changed = _apply_send(current, event) if isinstance(event, SendEvent) else _apply_receipt(current, event)
    if changed or state is None:
        current.updated_at_ms = now_ms
    return current, changed or state is None


def _apply_send(state: Delivery, send: SendEvent) -> bool:
    if state.has_send and state.sent_at_ms == send.sent_at_ms:
        return False  # a replayed send
    state.has_send = True
    state.template, state.sign, state.segments = send.template, send.sign, send.segments
    state.out_id, state.sent_at_ms = send.out_id, send.sent_at_ms
    if not send.submit_ok and _wins(state, "failed", send.sent_at_ms, "submit", send.submit_code, send.submit_message):
        state.status, state.stage, state.outcome_at_ms = "failed", "submit", send.sent_at_ms
        state.error_code, state.error_message = send.submit_code, send.submit_message
        state.failure_category = failure_category(state, False, send.submit_code, send.submit_message, "submit")
    return True


def _apply_receipt(state: Delivery, receipt: ReceiptEvent) -> bool:
    receipt_id = receipt.receipt_id
    if receipt_id in state.receipt_ids:
        return False
    state.receipt_ids.append(receipt_id)
    if state.receipt_sent_at_ms is None and receipt.sent_at_ms is not None:
        state.receipt_sent_at_ms = receipt.sent_at_ms
    if receipt.segments is not None:
        state.receipt_segments = receipt.segments
    status = "delivered" if receipt.delivered else "failed"
    if _wins(state, status, receipt.reported_at_ms, "receipt", receipt.error_code, receipt.error_message):
        state.status, state.stage, state.outcome_at_ms = status, "receipt", receipt.reported_at_ms
        state.error_code, state.error_message = receipt.error_code, receipt.error_message
        state.failure_category = failure_category(
            state, receipt.delivered, receipt.error_code, receipt.error_message, "receipt")
    return True


def failure_category(state: Delivery, delivered: bool, code: str, message: str, stage: str) -> str:
    """The category of an outcome, from the error-code knowledge base (provider, carrier, code, stage).

    A code not in the tables is `unknown` (and shows in sms.unmapped_codes). A code in the tables
    whose own text names no cause is categorized by the text the provider sent with it.
    """
    if delivered:
        return "delivered"
    return _failure_category(state.provider, state.carrier, code, message, stage)


@lru_cache(maxsize=65_536)
def _failure_category(provider: str, carrier: str, code: str, message: str, stage: str) -> str:
    category = KnowledgeBase.load().classify(provider, code, carrier, stage, message)[0]
    return "unknown" if category == "delivered" else category  # a failure never counts as delivered


def _wins(state: Delivery, status: str, at_ms: int, stage: str, code: str, message: str) -> bool:
    """The warehouse's order, max((outcome_at, rank, stage, code, message)): newest first, then a
    delivery over a failure, then the greater code, so a tie never depends on arrival order."""
    if state.status == "pending":
        return True
    return (at_ms, STATUS_RANK[status], stage, code, message) > (
        state.outcome_at_ms, STATUS_RANK[state.status], state.stage, state.error_code, state.error_message)


def is_final(state: Delivery) -> bool:
    """Joined and decided: the stream may forget it (the warehouse keeps the merged row)."""
    return state.has_send and state.status != "pending"
