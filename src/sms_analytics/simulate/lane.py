"""The provider-API lane of `make run`: messages sent through the provider simulators with the
real clients (the official Alibaba and Tencent SDKs, the KX md5 client), their sends recorded to
our /v1/sends/<provider>, and their receipts and uplink collected the ways each provider offers:
KX MTQuery and MOQuery, Tencent PullSmsSendStatus and PullSmsReplyStatus, Alibaba's HTTP batch
push from its simulator, Alibaba's MNS queue, and Alibaba QuerySendDetails compensation for
receipts that never come by push or queue. The other lane (`driver.drive`) posts provider pushes directly. Deterministic for a
seed; returns its own ground truth."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from sms_analytics.model.providers import PROVIDERS
from sms_analytics.simulate.aliyun import AliyunSimulator
from sms_analytics.simulate.kx import KxSimulator
from sms_analytics.simulate.mns import MnsSimulator
from sms_analytics.simulate.payloads.common import random_phone
from sms_analytics.simulate.payloads.metadata import ALIYUN_SIGN_CATALOGUE, TENCENT_SIGN_CATALOGUE
from sms_analytics.simulate.tencent import TencentSimulator
from sms_analytics.sources.aliyun.client import AliyunClient
from sms_analytics.sources.kx.client import KxClient
from sms_analytics.sources.tencent.client import TencentClient

KX_USER, KX_KEY = "100001", "demo-kx-apikey"
TC_ID, TC_KEY, TC_APP = "AKIDdemo", "demo-tencent-secret", "1400006666"
ALI_ID, ALI_KEY = "LTAIdemo", "demo-aliyun-secret"
MNS_QUEUE = "Alicom-Queue-demo-SmsReport"
ALI_FAILURES = (("IB:0064", "关机"), ("MK:0001", "空号"), ("DB:0141", "黑名单"))
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
    aliyun: AliyunSimulator = field(default_factory=lambda: AliyunSimulator(access_key_id=ALI_ID,
                                                                            access_key_secret=ALI_KEY))
    mns: MnsSimulator = field(default_factory=lambda: MnsSimulator(access_id=ALI_ID, access_key=ALI_KEY))
    runners: list[web.AppRunner] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    truth: dict[str, Counts] = field(default_factory=lambda: {p: Counts() for p in PROVIDERS})
    replies: int = 0

    async def start(self) -> None:
        self.mns.create_queue(MNS_QUEUE)
        for name, app in (("kx", self.kx.app()), ("tencent", self.tencent.app()), ("aliyun", self.aliyun.app()),
                          ("mns", self.mns.app())):
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
            "sms_tencent_app_ids": TC_APP, "sms_feed_interval_seconds": 0.5, "sms_provider_stats_interval": 5.0,
            "sms_aliyun_access_key_id": ALI_ID, "sms_aliyun_access_key_secret": ALI_KEY,
            "sms_aliyun_endpoint": self.urls["aliyun"].removeprefix("http://"), "sms_aliyun_protocol": "http",
            "sms_aliyun_mns_endpoint": self.urls["mns"], "sms_aliyun_mns_report_queue": MNS_QUEUE,
            # compensation within the run: ask about Alibaba/Tencent messages pending for 5 s
            "sms_compensate_after": 5, "sms_compensate_scan_seconds": 1.0, "sms_feed_rate": 50.0,
            # the template and sign metadata of the simulated traffic (the codes the simulators serve)
            "sms_aliyun_template_codes": ",".join(self.aliyun.template_catalogue),
            "sms_aliyun_sign_names": ",".join(s.name for s in ALIYUN_SIGN_CATALOGUE),
            "sms_tencent_sign_ids": ",".join(str(s.sign_id) for s in TENCENT_SIGN_CATALOGUE),
            "sms_metadata_interval": 10,
        }

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    async def drive(self, receiver: str, *, duration: float, rate: float, token: str | None, seed: int) -> None:
        rng = random.Random(seed + 7)
        kx = KxClient(self.urls["kx"], KX_USER, KX_KEY)
        tencent = TencentClient(secret_id=TC_ID, secret_key=TC_KEY,
                                endpoint=self.urls["tencent"].removeprefix("http://"), scheme="http")
        aliyun = AliyunClient(access_key_id=ALI_ID, access_key_secret=ALI_KEY,
                              endpoint=self.urls["aliyun"].removeprefix("http://"), protocol="http")
        query = f"?token={token}" if token else ""
        self.aliyun.push_to(f"{receiver}/callbacks/aliyun/sms-report{query}", None)
        started = time.monotonic()
        turn = -1
        reports: list[tuple[float, Any]] = []
        try:
            async with aiohttp.ClientSession(base_url=receiver) as http:
                while time.monotonic() - started < duration:
                    for _ in range(max(1, int(rate))):  # the providers in turn, so each gets traffic
                        turn = (turn + 1) % 3
                        if turn == 0:
                            reports.append(await self._kx_send(kx, http, query, rng))
                        elif turn == 1:
                            reports.append(await self._tencent_send(tencent, http, query, rng))
                        else:
                            reports.append(await self._aliyun_send(aliyun, http, query, rng))
                    await asyncio.sleep(1.0)
                    now = time.monotonic()
                    due = [r for r in reports if r[0] <= now]
                    reports = [r for r in reports if r[0] > now]
                    for _, report in due:
                        report()
                    await self.aliyun.flush_pushes(http)
                for _, report in reports:  # the rest now, so the run ends with everything reported
                    report()
                await self.aliyun.flush_pushes(http)
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
        if not serial:  # refused at submit (the quota-low scenario's quota used up): failed, no receipt
            self.truth["tencent"].failed += 1
            return time.monotonic(), lambda: None

        def report() -> None:
            if outcome < 0.03:
                self.truth["tencent"].pending += 1
                return
            if outcome < 0.92:
                self.tencent.report(serial)
                self.truth["tencent"].delivered += 1
                if rng.random() < 0.1:
                    self.tencent.add_reply(e164, "好的")
                    self.replies += 1
            else:
                code, text = rng.choice(TC_FAILURES)
                self.tencent.report(serial, delivered=False, errmsg=code, description=text)
                self.truth["tencent"].failed += 1

        return time.monotonic() + rng.uniform(0.5, 4.0), report

    async def _aliyun_send(self, client: AliyunClient, http: aiohttp.ClientSession, query: str,
                           rng: random.Random) -> Any:
        phone, _ = random_phone(rng)
        answer = await client.send_sms([phone], "阿里云", "SMS_153055065", params={"code": str(rng.randrange(1000, 9999))})
        response = answer.get("body", answer)
        biz = response["BizId"]
        await _post(http, f"/v1/sends/aliyun{query}", {
            "request": {"PhoneNumbers": phone, "SignName": "阿里云", "TemplateCode": "SMS_153055065"},
            "response": response})
        self.truth["aliyun"].sends += 1
        outcome, channel = rng.random(), rng.choices(("push", "mns", "query"), (0.5, 0.25, 0.25))[0]

        def report() -> None:
            if outcome < 0.03:
                self.truth["aliyun"].pending += 1
                return
            delivered = outcome < 0.91
            code = "DELIVERED" if delivered else rng.choice(ALI_FAILURES)[0]
            # "query": found only when our compensation asks QuerySendDetails
            body = self.aliyun.report(biz, phone, delivered=delivered, err_code=code, push=channel == "push")
            if channel == "mns":
                self.mns.send(MNS_QUEUE, body)
            if delivered:
                self.truth["aliyun"].delivered += 1
            else:
                self.truth["aliyun"].failed += 1

        return time.monotonic() + rng.uniform(0.5, 4.0), report

    def ground_truth(self) -> dict[str, dict[str, int]]:
        return {p: vars(c).copy() for p, c in self.truth.items()}


async def _post(http: aiohttp.ClientSession, path: str, body: Any) -> None:
    async with http.post(path, data=msgspec.json.encode(body)) as resp:
        if resp.status != 202:
            raise RuntimeError(f"{path.split('?')[0]} answered {resp.status}: {(await resp.text())[:200]}")
