"""Conversions of the simulated traffic (issue 16): the business reports that a verification code was
entered. For a share of the delivered verification-code messages (the templates simulate/template_names.csv
names "verification code"), a conversion a few seconds after the send, posted to `POST /v1/conversions`:
most name their message by id and number, some by number, template and sent window; some come before the
message's receipt, some are posted twice. The ground truth counts the messages converted."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sms_analytics.model.providers import Provider
from sms_analytics.simulate.payloads.common import Json, iso_time
from sms_analytics.simulate.plan import PlannedMessage, PlannedSend, TrafficPlan, delay_scale

CONVERSIONS_PATH = "/v1/conversions"
# The verification-code templates (KX sends no template id: its messages are not converted here).
VERIFICATION_TEMPLATES: dict[str, str] = {"aliyun": "SMS_153055065", "tencent": "1110"}
CONVERSION_SHARE = 0.6  # of the delivered verification-code messages
WINDOW_FORM_SHARE = 0.25  # named by number, template and sent window instead of by id
REPEAT_SHARE = 0.1  # posted twice
CONVERSION_DELAY_S = (1.0, 20.0)  # after the send (compressed for short runs, as the receipts)
WINDOW_BEFORE_S, WINDOW_AFTER_S = 60.0, 5.0  # the sent window of the window form, around the send


@dataclass(frozen=True, slots=True)
class ConversionDrop:
    """A scenario: the messages sent in [start, end) (seconds after the start of the run) convert at `share`
    instead of CONVERSION_SHARE (codes that do not arrive, although their receipts say delivered)."""

    start: float
    end: float
    share: float = 0.05


@dataclass(slots=True)
class PlannedConversion:
    provider: Provider
    due: float  # seconds after the start of the run
    record: Json
    repeat: bool
    before_receipt: bool  # due before the message's receipt
    posted: bool = False


def template_of(send: PlannedSend) -> str:
    request = send.body.get("request", {})
    return str(request.get("TemplateCode") or request.get("TemplateId") or "")


def _record(rng: random.Random, plan: TrafficPlan, send: PlannedSend, msg: PlannedMessage, due: float) -> Json:
    converted_at = iso_time(plan.start + due)
    if rng.random() < WINDOW_FORM_SHARE:
        sent = plan.start + send.at
        return {"provider": msg.provider, "phone": msg.phone, "template": template_of(send), "converted_at": converted_at,
                "sent_from": iso_time(sent - WINDOW_BEFORE_S), "sent_to": iso_time(sent + WINDOW_AFTER_S)}
    return {"provider": msg.provider, "message_id": msg.message_id, "phone": msg.phone, "converted_at": converted_at}


def plan_conversions(plan: TrafficPlan, seed: int, drop: ConversionDrop | None = None) -> list[PlannedConversion]:
    """The conversions of a plan's delivered verification-code messages, by due time (their own random
    stream: the plan's messages and receipts stay as they are); `drop`: fewer in its window."""
    rng = random.Random(f"conversions:{seed}")
    scale = delay_scale(plan.duration)
    out = []
    for send in plan.sends:
        if VERIFICATION_TEMPLATES.get(send.provider) != template_of(send):
            continue
        for msg in send.messages:
            share = drop.share if drop is not None and drop.start <= send.at < drop.end else CONVERSION_SHARE
            if msg.outcome != "delivered" or not msg.message_id or rng.random() >= share:
                continue
            due = send.at + rng.uniform(*CONVERSION_DELAY_S) * scale
            out.append(PlannedConversion(send.provider, due, _record(rng, plan, send, msg, due),
                                         repeat=rng.random() < REPEAT_SHARE, before_receipt=due < msg.receipt_due))
    return sorted(out, key=lambda c: c.due)
