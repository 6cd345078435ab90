"""dashboards/relay.py without a pipeline: Grafana's webhook payload read into alerts (rule, key, state, times,
the scope of a drop's causes), refused with a reason, and the provisioning file checked against what the
relay accepts and against docker-compose.yml. The endpoint itself: tests/integration/test_relay.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from sms_analytics.dashboards import alerting, relay
from sms_analytics.model import topics
from sms_analytics.settings import Settings
from sms_analytics.sources.producer import BrokerUnavailable
from tests import grafana_provisioning
from tests.conftest import serve

ROOT = Path(__file__).resolve().parents[3]
STARTS = "2026-12-04T10:00:00.123456789+08:00"  # Go's RFC 3339 with nanoseconds and an offset
STARTS_MS = 1_796_349_600_123
ZERO = "0001-01-01T00:00:00Z"


def grafana_alert(status: str = "firing", ends: str = ZERO, **labels: str) -> dict[str, Any]:
    """One alert as Grafana's webhook notifier sends it (docs: "Webhook JSON payload")."""
    return {
        "status": status,
        "labels": {"alertname": "SMS delivery rate below floor", "grafana_folder": "SMS", "severity": "critical",
                   "team": "sms", **labels},
        "annotations": {"summary": "aliyun: delivery rate 41% in the last hour", "description": "..."},
        "startsAt": STARTS, "endsAt": ends,
        "generatorURL": "http://grafana:3000/alerting/grafana/sms-rate-floor/view?orgId=1",
        "fingerprint": "c6eadffa33fcdf37", "silenceURL": "http://grafana:3000/alerting/silence/new",
        "dashboardURL": "", "panelURL": "", "values": {"B": 0.41, "C": 1},
    }


def payload(*alerts: dict[str, Any]) -> bytes:
    return msgspec.json.encode({
        "receiver": "sms-relay", "status": alerts[0]["status"], "orgId": 1, "alerts": list(alerts),
        "groupLabels": {"alertname": "x"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://grafana:3000/", "version": "1", "groupKey": "{}:{}", "truncatedAlerts": 0,
        "title": "[FIRING:1]", "state": "alerting", "message": "...",
    })


def test_a_firing_floor_alert_of_a_provider_and_carrier() -> None:
    [(alert, scope)] = relay.parse(payload(grafana_alert(provider="aliyun", carrier="mobile")))
    assert (alert.rule, alert.key, alert.state, alert.source) == ("sms-rate-floor", "aliyun/mobile", "firing", "grafana")
    assert alert.started_at_ms == alert.at_ms == STARTS_MS and alert.value == 0.41 and alert.threshold == 0.8
    assert alert.window_seconds == 3600 and alert.summary.startswith("aliyun: delivery rate")
    assert scope == relay.Scope("aliyun", "mobile", None, STARTS_MS - 3_600_000, STARTS_MS, "previous")


def test_the_seven_day_rule_takes_the_week_and_a_baseline_label_wins() -> None:
    drop = {**grafana_alert(provider="kx"), "generatorURL": ""}
    drop["labels"]["alertname"] = "SMS delivery rate drop vs same hour last 7 days"
    [(alert, scope)] = relay.parse(payload(drop))
    assert alert.rule == "sms-rate-drop" and scope is not None and scope.baseline == "week"
    # The carrier × province rule: known by its baseline label, carrier in either language.
    region = grafana_alert(provider="tencent", carrier="移动", province="广东", baseline="week")
    region["labels"]["alertname"] = "SMS delivery rate drop per carrier and province"
    region["generatorURL"] = "http://grafana:3000/alerting/grafana/sms-rate-region/view"
    [(alert, scope)] = relay.parse(payload(region))
    assert (alert.rule, alert.key) == ("sms-rate-region", "tencent/移动/广东")
    assert scope == relay.Scope("tencent", "mobile", "广东", STARTS_MS - 3_600_000, STARTS_MS, "week")


def test_a_resolved_alert_keeps_its_start_and_ends_at_its_end_without_causes() -> None:
    [(alert, scope)] = relay.parse(payload(grafana_alert("resolved", "2026-12-04T02:30:00Z", provider="aliyun")))
    assert alert.state == "resolved" and alert.started_at_ms == STARTS_MS and scope is None
    assert alert.at_ms == STARTS_MS - 123 + 30 * 60_000 and alert.summary.startswith("resolved: aliyun: delivery")
    # A repeat of the same firing alert is the same row (same rule, key, started_at, state, at).
    first, again = (relay.parse(payload(grafana_alert(provider="aliyun")))[0][0] for _ in range(2))
    assert first == again


def test_other_rules_are_relayed_without_causes() -> None:
    blackout = grafana_alert(provider="kx")
    blackout["labels"]["alertname"] = "SMS receipt blackout"
    [(alert, scope)] = relay.parse(payload(blackout))
    assert (alert.rule, alert.key, alert.threshold, alert.window_seconds) == ("sms-receipt-blackout", "kx", 180.0, 900)
    assert scope is None
    quota = grafana_alert(provider="kx", account="acct-1")
    quota["labels"]["alertname"] = "SMS balance or package quota running out"
    assert relay.parse(payload(quota))[0][0].key == "kx/acct-1"


def test_an_unknown_scope_is_relayed_without_causes() -> None:
    assert relay.parse(payload(grafana_alert(provider="aliyun", province="Atlantis")))[0][1] is None
    assert relay.parse(payload(grafana_alert(provider="nope")))[0][1] is None


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not a Grafana webhook payload"),
    (b'{"receiver": "x", "status": "firing"}', "alerts"),
    (b'{"alerts": [{"status": "firing", "labels": {"alertname": "a"}}]}', "startsAt"),
    (payload({**grafana_alert(), "status": "pending"}), "alerts[0].status must be firing or resolved"),
    (payload({**grafana_alert(), "startsAt": "yesterday"}), "alerts[0].startsAt is not an RFC 3339 time"),
    (payload({**grafana_alert(), "startsAt": ZERO}), "alerts[0].startsAt is missing"),
    (payload({**grafana_alert(), "startsAt": "2026-12-04T10:00:00"}), "has no offset"),
    (payload(grafana_alert(provider="aliyun", baseline="month")), "labels.baseline must be one of"),
    (payload({**grafana_alert(), "labels": {}, "generatorURL": ""}), "no alertname label"),
])
def test_malformed_payloads_are_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(relay.PayloadError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        relay.parse(body)


label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


labels_st = st.dictionaries(st.one_of(label_text, st.sampled_from([*relay.KEY_LABELS, "alertname", "baseline"])),
                            st.one_of(label_text, st.sampled_from(["aliyun", "mobile", "广东", "week", "previous"])),
                            max_size=8)


@given(labels_st, st.sampled_from(["firing", "resolved"]))
def test_any_label_set_is_read_or_refused_with_a_reason(labels: dict[str, str], status: str) -> None:
    body = payload({**grafana_alert(status, "2026-12-04T03:00:00Z"), "labels": labels})
    if status == "firing" and labels.get("baseline") not in (None, "", "previous", "week"):
        with pytest.raises(relay.PayloadError, match="baseline must be one of"):
            relay.parse(body)
        return
    [(alert, scope)] = relay.parse(body)  # a rule from the generatorURL when there is no alertname
    assert alert.key == "/".join(labels[k] for k in relay.KEY_LABELS if labels.get(k))
    assert alert.rule and alert.state == status and alert.source == "grafana"
    assert scope is None or (status == "firing" and scope.provider == labels["provider"])


# --- the provisioning file ----------------------------------------------------------------------------
def test_the_provisioning_file_is_what_the_module_makes() -> None:
    assert relay.FILE.read_text(encoding="utf-8") == relay.render()
    assert relay.FILE.parent == alerting.PATH.parent


def test_the_contact_point_posts_to_the_relay_of_the_compose_worker_with_its_token() -> None:
    doc = yaml.safe_load(relay.FILE.read_text(encoding="utf-8"))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    worker, grafana = compose[relay.COMPOSE_SERVICE], compose["grafana"]
    token = "s3cret-token"
    read = grafana_provisioning.grafana_reads(doc, grafana_provisioning.schema_of(relay.FILE),
                                              lambda name: token if name == relay.BEARER_VARIABLE else f"<{name}>")
    [point] = read["contactPoints"]
    [receiver] = point["receivers"]
    settings = receiver["settings"]
    assert receiver["type"] == "webhook" and settings["httpMethod"] == "POST"
    assert settings["url"] == f"http://{relay.COMPOSE_SERVICE}:{worker['environment']['SMS_QUERY_PORT']}{relay.PATH}"
    # What the relay accepts: Authorization: Bearer <SMS_QUERY_TOKEN> (query_api.bearer_authorized).
    assert (settings["authorization_scheme"], settings["authorization_credentials"]) == ("Bearer", token)
    assert relay.BEARER_VARIABLE in worker["environment"] and relay.BEARER_VARIABLE in grafana["environment"]
    assert "sms_query_token" in Settings.model_fields and relay.BEARER_VARIABLE == "SMS_QUERY_TOKEN"
    assert str(relay.COMPOSE_PORT) == worker["environment"]["SMS_QUERY_PORT"]
    # The SMS folder's alerts go to it; the root keeps Grafana's default receiver.
    [policy] = read["policies"]
    [route] = policy["routes"]
    assert route["receiver"] == point["name"] and route["object_matchers"] == [["grafana_folder", "=", alerting.FOLDER]]
    assert policy["receiver"] == relay.DEFAULT_RECEIVER


# --- the endpoint's answers, on a real local server with a recording publisher -------------------------
class Recorder:
    """A publisher (sources/producer.Publishes) that keeps what it is given, or refuses like a broker down."""

    def __init__(self, down: bool = False) -> None:
        self.down, self.ready = down, True
        self.records: list[tuple[str, bytes | None, bytes, str]] = []
        self.letters: list[tuple[bytes, str, str]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, events: Any, rejected: Any, endpoint: str) -> None: ...

    async def dead_letter(self, raw: bytes, reason: str, endpoint: str, index: int = -1) -> None:
        self.letters.append((raw, reason, endpoint))

    async def publish_record(self, topic: str, key: bytes | None, value: bytes, endpoint: str) -> None:
        if self.down:
            raise BrokerUnavailable("not connected to the broker yet")
        self.records.append((topic, key, value, endpoint))


def no_query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    raise AssertionError("no drop alert here: nothing to count")


async def answer(publisher: Recorder, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    app = web.Application()
    relay.install(app, no_query, publisher, lambda: (), "relay-token")
    runner, url = await serve(app)
    try:
        async with aiohttp.ClientSession() as session, session.post(url + relay.PATH, data=body,
                                                                    headers=headers) as resp:
            return resp.status, await resp.json()
    finally:
        await runner.cleanup()


async def test_the_endpoint_wants_the_token_publishes_and_refuses() -> None:
    blackout = grafana_alert(provider="kx")
    blackout["labels"]["alertname"] = "SMS receipt blackout"
    good, auth = payload(blackout), {"Authorization": "Bearer relay-token"}
    publisher = Recorder()
    assert (await answer(publisher, good, {}))[0] == 401
    assert (await answer(publisher, good, {"Authorization": "Bearer wrong"}))[0] == 401
    assert not publisher.records and not publisher.letters  # a refusal before the body is read stores nothing
    status, body = await answer(publisher, good, auth)
    assert status == 200 and body == {"relayed": [{"rule": "sms-receipt-blackout", "key": "kx", "state": "firing",
                                                   "causes": 0}]}
    [(topic, key, value, endpoint)] = publisher.records
    assert (topic, key, endpoint) == (topics.ALERTS, b"sms-receipt-blackout|kx", relay.PATH)
    assert msgspec.json.decode(value)["source"] == "grafana"
    status, body = await answer(publisher, b"{}", auth)
    assert status == 400 and "not a Grafana webhook payload" in body["error"]
    assert publisher.letters == [(b"{}", body["error"], relay.PATH)]
    assert (await answer(Recorder(down=True), good, auth))[0] == 503  # Grafana retries


def test_every_drop_rule_the_relay_explains_is_a_provisioned_rule_and_every_rate_floor_is_one() -> None:
    """DROP_RULES names rules by uid: a renamed rule would lose its causes quietly."""
    provisioned = {r["uid"]: r for r in alerting.rules()}
    assert set(relay.DROP_RULES) <= set(provisioned)
    rate_rules = {uid for uid in provisioned if "rate" in uid and "conversion" not in uid}
    assert rate_rules == set(relay.DROP_RULES), rate_rules
