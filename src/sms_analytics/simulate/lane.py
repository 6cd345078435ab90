"""The provider-API lane of `make run`: messages sent through the provider simulators with the
real clients (the official Tencent SDK, the KX md5 client), their sends recorded to our
/v1/sends/<provider>, and their receipts and uplink collected by our pull feeds (KX MTQuery and
MOQuery, Tencent PullSmsSendStatus and PullSmsReplyStatus) — the other lane (`traffic.drive`)
exercises the push endpoints. Deterministic for a seed; returns its own ground truth."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from sms_analytics.simulate.kx import KxSimulator
from sms_analytics.simulate.tencent import TencentSimulator
from sms_analytics.simulate.traffic import random_phone
from sms_analytics.sources.kx_client import KxClient
from sms_analytics.sources.tencent_client import TencentClient

KX_USER, KX_KEY = "100001", "demo-kx-apikey"
TC_ID, TC_KEY, TC_APP = "AKIDdemo", "demo-tencent-secret", "1400006666"
KX_FAILURES = (("UNDELIV", "短信接收失败"), ("EXPIRED", "短信接收失败"), ("REJECTD", "客户接收失败"))
TC_FAILURES = (("DB:0107", "关机"), ("ERR:044", "空号"), ("MN:0006", "运营商频率限制"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Counts:
    sends: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0


@dataclass
class ProviderLane:
    kx: KxSimulator = field(default_factory=lambda: KxSimulator(userid=KX_USER, apikey=KX_KEY, report_delay=None))
    tencent: TencentSimulator = field(default_factory=lambda: TencentSimulator(secret_id=TC_ID, secret_key=TC_KEY,
                                                                              app_id=TC_APP))
    runners: list[web.AppRunner] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    truth: dict[str, Counts] = field(default_factory=lambda: {"kx": Counts(), "tencent": Counts()})
    replies: int = 0

    async def start(self) -> None:
        for name, app in (("kx", self.kx.app()), ("tencent", self.tencent.app())):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = _free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)
            self.urls[name] = f"http://127.0.0.1:{port}"

    def settings(self) -> dict[str, Any]:
        """Settings that point our pull feeds at the simulators."""
        return {
            "sms_kx_base_url": self.urls["kx"], "sms_kx_userid": KX_USER, "sms_kx_apikey": KX_KEY,
            "sms_tencent_secret_id": TC_ID, "sms_tencent_secret_key": TC_KEY,
            "sms_tencent_endpoint": self.urls["tencent"].removeprefix("http://"), "sms_tencent_scheme": "http",
            "sms_tencent_app_ids": TC_APP, "sms_feed_interval_seconds": 0.5,
        }

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    async def drive(self, receiver: str, *, duration: float, rate: float, token: str | None, seed: int) -> None:
        rng = random.Random(seed + 7)
        kx = KxClient(self.urls["kx"], KX_USER, KX_KEY)
        tencent = TencentClient(secret_id=TC_ID, secret_key=TC_KEY,
                                endpoint=self.urls["tencent"].removeprefix("http://"), scheme="http")
        query = f"?token={token}" if token else ""
        started = time.monotonic()
        reports: list[tuple[float, Any]] = []
        try:
            async with aiohttp.ClientSession(base_url=receiver) as http:
                while time.monotonic() - started < duration:
                    for _ in range(max(1, int(rate))):
                        if rng.random() < 0.5:
                            reports.append(await self._kx_send(kx, http, query, rng))
                        else:
                            reports.append(await self._tencent_send(tencent, http, query, rng))
                    await asyncio.sleep(1.0)
                    now = time.monotonic()
                    due = [r for r in reports if r[0] <= now]
                    reports = [r for r in reports if r[0] > now]
                    for _, report in due:
                        report()
                for _, report in reports:  # the rest now, so the run ends with everything reported
                    report()
        finally:
            await kx.close()

    async def _kx_send(self, client: KxClient, http: aiohttp.ClientSession, query: str, rng: random.Random) -> Any:
        phone, _ = random_phone(rng)
        content = "【邦邦快递】您的快递已到，取件码 " + str(rng.randrange(1000, 9999))
        response = await client.send([phone], content)
        taskid = response["data"]["taskid"]
        await _post(http, f"/v1/sends/kx{query}", {
            "request": {"userid": KX_USER, "ts": "0", "sign": "-", "mobile": phone, "msgcontent": content},
            "response": response})
        self.truth["kx"].sends += 1
        outcome = rng.random()

        def report() -> None:
            if outcome < 0.04:
                self.truth["kx"].pending += 1  # this receipt never comes
                return
            code, msg = ("DELIVRD", "成功") if outcome < 0.9 else rng.choice(KX_FAILURES)
            self.kx.queue_report(taskid, phone, code=code, msg=msg)
            if code == "DELIVRD":
                self.truth["kx"].delivered += 1
            else:
                self.truth["kx"].failed += 1
            if rng.random() < 0.05:
                self.kx.queue_mo(phone, "TD")
                self.replies += 1

        return time.monotonic() + rng.uniform(0.5, 4.0), report

    async def _tencent_send(self, client: TencentClient, http: aiohttp.ClientSession, query: str,
                            rng: random.Random) -> Any:
        phone, _ = random_phone(rng)
        e164 = f"+86{phone}"
        sent = await client.send_sms(TC_APP, [e164], "1110", "腾讯云", params=[str(rng.randrange(1000, 9999))])
        serial = sent["SendStatusSet"][0]["SerialNo"]
        await _post(http, f"/v1/sends/tencent{query}", {
            "request": {"PhoneNumberSet": [e164], "SmsSdkAppId": TC_APP, "TemplateId": "1110", "SignName": "腾讯云"},
            "response": {"Response": sent}})
        self.truth["tencent"].sends += 1
        outcome = rng.random()

        def report() -> None:
            if outcome < 0.03:
                self.truth["tencent"].pending += 1
                return
            if outcome < 0.92:
                self.tencent.report(serial)
                self.truth["tencent"].delivered += 1
            else:
                code, text = rng.choice(TC_FAILURES)
                self.tencent.report(serial, delivered=False, errmsg=code, description=text)
                self.truth["tencent"].failed += 1

        return time.monotonic() + rng.uniform(0.5, 4.0), report

    def ground_truth(self) -> dict[str, dict[str, int]]:
        return {p: vars(c).copy() for p, c in self.truth.items()}


async def _post(http: aiohttp.ClientSession, path: str, body: Any) -> None:
    async with http.post(path, data=orjson.dumps(body)) as resp:
        if resp.status != 202:
            raise RuntimeError(f"{path.split('?')[0]} answered {resp.status}: {(await resp.text())[:200]}")
