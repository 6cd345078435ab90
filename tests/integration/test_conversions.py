"""Conversions (POST /v1/conversions) end to end: before and after their send, repeated, in each of
their forms (message id and number; message id alone; number, template and sent window), against a
ground truth; a malformed record dead-lettered without its valid neighbours."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from sms_analytics.runtime import Runtime
from tests.conftest import eventually, rolled_up_within, rows
from tests.integration.test_pipeline import post


def iso(dt: datetime) -> str:
    return dt.isoformat()


def kx_report(task: str, phone: str, at: datetime) -> dict[str, Any]:
    china = at.astimezone(UTC) + timedelta(hours=8)
    return {"time": china.strftime("%Y%m%d%H%M%S"), "taskid": task, "code": "DELIVRD", "msg": "ok", "mobile": phone,
            "messageid": task}


async def test_conversions_in_either_order_and_repeated_match_the_ground_truth(pipeline: Runtime,
                                                                              http: aiohttp.ClientSession) -> None:
    tag = uuid.uuid4().hex[:10]
    template = f"OTP-{tag}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    phones = {name: f"1390{i:03d}{int(tag[:4], 16) % 10000:04d}" for i, name in enumerate("ABCDEFG")}
    ids = {name: f"{tag}-{name}" for name in phones}
    sends = dict.fromkeys(phones, t0)
    sends["G"] = t0 - timedelta(minutes=5)  # an earlier send to C's number: the window form picks the latest
    phones["G"] = phones["C"]
    converted = {name: t0 + timedelta(seconds=10 * (i + 1)) for i, name in enumerate("ABCDF")}

    before = [  # conversions that come before their send
        {"provider": "kx", "message_id": ids["A"], "phone": phones["A"], "converted_at": iso(converted["A"])},
        {"provider": "kx", "phone": phones["F"], "template": template, "converted_at": iso(converted["F"]),
         "sent_from": iso(t0 - timedelta(minutes=1)), "sent_to": iso(t0 + timedelta(minutes=1))},
    ]
    status, body = await post(http, "/v1/conversions", before)
    assert status == 202 and orjson.loads(body) == {"accepted": 2, "rejected": []}

    send_records = [{"provider": "kx", "message_id": ids[n], "phone": phones[n], "sent_at": iso(sends[n]),
                     "template": template} for n in phones]
    assert (await post(http, "/v1/sends", send_records))[0] == 202
    reports = [kx_report(ids[n], phones[n], sends[n] + timedelta(seconds=3)) for n in phones]
    assert (await post(http, "/callbacks/kx/report", reports))[0] == 200

    after = [
        {"provider": "kx", "message_id": ids["B"], "phone": phones["B"], "converted_at": iso(converted["B"])},
        {"provider": "kx", "message_id": ids["B"], "phone": phones["B"], "converted_at": iso(converted["B"])},  # repeat
        {"provider": "kx", "message_id": ids["B"], "phone": phones["B"],
         "converted_at": iso(converted["B"] + timedelta(minutes=1))},  # a second conversion: the first counts
        {"provider": "kx", "phone": phones["C"], "template": template, "converted_at": iso(converted["C"])},
        {"provider": "kx", "message_id": ids["D"], "converted_at": iso(converted["D"])},
        {"provider": "kx", "phone": phones["E"], "converted_at": iso(converted["D"])},  # malformed: no template
    ]
    status, body = await post(http, "/v1/conversions", after)
    reply = orjson.loads(body)
    assert status == 202 and reply["accepted"] == 5
    assert [r["index"] for r in reply["rejected"]] == [5] and "phone and template" in reply["rejected"][0]["reason"]

    truth = {ids[n]: int((converted[n] - sends[n]).total_seconds() * 1000) for n in converted}

    async def messages() -> dict[str, Any] | None:
        found = await rows(pipeline, f"SELECT message_id, conversion_ms, status FROM sms.messages "
                                     f"WHERE template = '{template}'")
        got = {r["message_id"]: r["conversion_ms"] for r in found}
        return got if len(found) == 7 and {m: v for m, v in got.items() if v is not None} == truth else None

    got = await eventually(messages, timeout=30)
    assert got[ids["E"]] is None and got[ids["G"]] is None

    async def rolled() -> tuple[int, int, int] | None:
        found = await rows(pipeline, f"SELECT sum(converted) AS c, sum(delivered_unconverted) AS u, "
                                     f"sum(conversion_ms_sum) AS s FROM sms.rollup_minute WHERE template = '{template}'")
        level = await rows(pipeline, f"SELECT sum(converted) AS c FROM sms.rollup_level WHERE grain = 'full' "
                                     f"AND level = 3600 AND template = '{template}'")
        value = (int(found[0]["c"]), int(found[0]["u"]), int(found[0]["s"]))
        return value if value == (5, 2, sum(truth.values())) and int(level[0]["c"]) == 5 else None

    await rolled_up_within(pipeline, rolled)
    stored = await rows(pipeline, f"SELECT count() AS n FROM sms.conversions FINAL WHERE message_id = '{ids['B']}'")
    assert stored[0]["n"] == 2  # the repeat folded; the second conversion is kept as reported
