"""simulate.lane: the settings it hands to the feeds, its ground truth, _post, and one short drive
of the three providers' real clients against the simulators and a recording receiver, all on
loopback (no pipeline)."""

from __future__ import annotations

import json
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sms_analytics.model.providers import PROVIDERS
from sms_analytics.settings import Settings
from sms_analytics.simulate import lane
from sms_analytics.simulate.lane import Counts, ProviderLane


def test_free_port_is_bindable():
    port = lane._free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_settings_point_the_feeds_at_the_simulators():
    pl = ProviderLane()
    pl.urls = {"kx": "http://127.0.0.1:1", "tencent": "http://127.0.0.1:2", "aliyun": "http://127.0.0.1:3",
               "mns": "http://127.0.0.1:4"}
    values = pl.settings()
    assert values["sms_kx_base_url"] == "http://127.0.0.1:1"
    assert values["sms_tencent_endpoint"] == "127.0.0.1:2"
    assert values["sms_aliyun_endpoint"] == "127.0.0.1:3"
    assert values["sms_aliyun_mns_endpoint"] == "http://127.0.0.1:4"
    assert values["sms_aliyun_mns_report_queue"] == lane.MNS_QUEUE
    s = Settings(_env_file=None, **values)
    assert s.sms_tencent_app_ids == lane.TC_APP
    assert s.sms_kx_apikey is not None
    assert s.sms_kx_apikey.get_secret_value() == lane.KX_KEY
    assert s.sms_feed_rate == 50.0


def test_ground_truth_is_a_copy():
    pl = ProviderLane()
    assert list(pl.truth) == list(PROVIDERS)
    pl.truth["kx"].sends = 2
    truth = pl.ground_truth()
    assert truth["kx"] == {"sends": 2, "delivered": 0, "failed": 0, "pending": 0}
    truth["kx"]["sends"] = 9
    assert pl.truth["kx"].sends == 2
    assert Counts() == Counts(0, 0, 0, 0)


class Receiver:
    def __init__(self, status=202):
        self.posts: list[tuple[str, dict]] = []
        self.status = status
        self.app = web.Application()
        self.app.router.add_post("/{tail:.*}", self.handle)

    async def handle(self, request):
        self.posts.append((request.path_qs, json.loads(await request.read())))
        return web.Response(status=self.status, text="nope" if self.status != 202 else "")


async def test_post_accepts_202_and_refuses_others():
    ok, bad = Receiver(), Receiver(status=400)
    async with TestServer(ok.app, host="127.0.0.1") as s1, TestServer(bad.app, host="127.0.0.1") as s2:
        async with aiohttp.ClientSession(base_url=str(s1.make_url(""))) as http:
            await lane._post(http, "/v1/sends/kx?token=t", {"a": "中"})
        assert ok.posts == [("/v1/sends/kx?token=t", {"a": "中"})]
        async with aiohttp.ClientSession(base_url=str(s2.make_url(""))) as http:
            with pytest.raises(RuntimeError, match=r"^/v1/sends/kx answered 400: nope$"):
                await lane._post(http, "/v1/sends/kx?token=secret", {})


@pytest.mark.timeout(60)
async def test_one_round_of_each_provider():
    receiver = Receiver()
    pl = ProviderLane()
    await pl.start()
    try:
        assert sorted(pl.urls) == ["aliyun", "kx", "mns", "tencent"]
        async with TestServer(receiver.app, host="127.0.0.1") as server:
            await pl.drive(str(server.make_url("")).rstrip("/"), duration=0.1, rate=3, token="tk", seed=5)
    finally:
        await pl.stop()
    sends = [path for path, _ in receiver.posts if path.startswith("/v1/sends/")]
    assert sends == ["/v1/sends/kx?token=tk", "/v1/sends/tencent?token=tk", "/v1/sends/aliyun?token=tk"]
    truth = pl.ground_truth()
    for name in PROVIDERS:
        counts = truth[name]
        assert counts["sends"] == 1
        assert counts["delivered"] + counts["failed"] + counts["pending"] == 1
    kx_send = next(body for path, body in receiver.posts if path.startswith("/v1/sends/kx"))
    assert kx_send["request"]["userid"] == lane.KX_USER
    assert kx_send["response"]["data"]["taskid"]
    assert all(p.startswith(("/v1/sends/", "/callbacks/aliyun/sms-report?token=tk")) for p, _ in receiver.posts)
