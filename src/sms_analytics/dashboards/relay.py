"""The Grafana relay (issue 17): Grafana's alerts reach sms.alerts and the webhooks like the stream's, with
their causes.

Grafana's webhook contact point posts its unified-alerting payload (top level `receiver`, `status`,
`alerts[]`, each with `status`, `labels`, `annotations`, `startsAt`, `endsAt`, `fingerprint`, `values`,
`generatorURL`, ...) to `POST /v1/grafana/alerts` on the query endpoint of the process that holds the
warehouse (`up`, `worker`, `sink`; runtime.py mounts it), with `Authorization: Bearer <SMS_QUERY_TOKEN>`
as POST /query requires. Each alert of the payload becomes a streams/alerts.py `Alert` with source
'grafana':

- rule: the Grafana rule's uid (sms-rate-floor ...), found by its title (the `alertname` label) among
  dashboards/alerting.py's rules, else from `generatorURL` (/alerting/grafana/<uid>/view), else the
  alertname itself;
- key: the values of the labels provider, carrier, province, template, account that are present, joined
  by '/' (provider[/carrier[/province]] for the delivery-rate rules), as the stream keys its alerts;
- started_at = startsAt, and at = startsAt while firing, endsAt once resolved: every repeat Grafana sends
  of one alert is the same row of sms.alerts (ReplacingMergeTree on rule, key, started_at, state, at).

A firing delivery-rate drop (DROP_RULES, or any rule whose alert carries a `baseline` label, as the
carrier × province rule sms-region-rate-floor does) gets its causes from dashboards/why.py over its rule's window (an hour)
ending at startsAt, scoped to the provider and the carrier and province its labels give, against the
`baseline` label, else the rule's (the previous hour; the same hour of the last 7 days for sms-rate-drop).

Where this ends: the alerts are published to sms.alerts.v1 (the sink writes them) through the process's
publisher (the receivers' one, journaled in embedded `up`), answered 200 once the broker (or the journal)
has them, 503 when it cannot (Grafana retries), and posted to every `AlertRules.webhooks` in the
background (streams/agents.py `post_webhooks`). A body that is not such a payload: 400 with the reason,
its raw bytes to sms.deadletter.v1 with the reason (endpoint /v1/grafana/alerts). `python -m
sms_analytics.dashboards.relay` writes the Grafana side: the contact point and the notification policy
(dashboards/provisioning/alerting/sms-relay.yaml); `dashboards push` makes the same two over Grafana's HTTP API
(dashboards/push.py, from contact_point() and route()).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import structlog
import yaml
from aiohttp import web

from sms_analytics.dashboards import alerting
from sms_analytics.dashboards.why import BASELINES, Baseline, Query, why
from sms_analytics.model import topics
from sms_analytics.model.providers import CARRIER_NAMES, PROVIDERS
from sms_analytics.model.region import PROVINCES
from sms_analytics.model.rootcause import Cause
from sms_analytics.settings import Webhook
from sms_analytics.sinks.query_api import bearer_authorized
from sms_analytics.sources.producer import BrokerUnavailable, Publishes
from sms_analytics.streams.agents import post_webhooks
from sms_analytics.streams.alerts import Alert

log = structlog.get_logger(__name__)

PATH = "/v1/grafana/alerts"
SOURCE = "grafana"
KEY_LABELS = ("provider", "carrier", "province", "template", "account")
HOUR_MS = alerting.HOUR * 1000
# The delivery-rate drop rules of dashboards/alerting.py: window (ms, ending at startsAt) and default baseline.
DROP_RULES: dict[str, tuple[int, Baseline]] = {
    "sms-rate-floor": (HOUR_MS, "previous"),  # the last hour below the floor: against the hour before
    "sms-rate-drop": (HOUR_MS, "week"),  # the last hour against the same hour of the previous 7 days
    "sms-region-rate-floor": (HOUR_MS, "previous"),  # a carrier × province's last hour below the floor
}
_RULE_UID = re.compile(r"/alerting/grafana/([^/?#]+)/")
_CARRIERS = {**{name: name for name in CARRIER_NAMES}, **{zh: en for en, zh in CARRIER_NAMES.items()}}


# --- Grafana's webhook payload ----------------------------------------------------------------------
class GrafanaAlert(msgspec.Struct, kw_only=True):
    """One alert of the payload (Grafana's webhook notifier; fields not listed are ignored)."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    starts_at: str = msgspec.field(name="startsAt")
    ends_at: str = msgspec.field(default="", name="endsAt")
    generator_url: str = msgspec.field(default="", name="generatorURL")
    fingerprint: str = ""
    values: dict[str, float | None] | None = None


class GrafanaPayload(msgspec.Struct, kw_only=True):
    receiver: str = ""
    status: str = ""
    alerts: list[GrafanaAlert]


class PayloadError(ValueError):
    """The body is not a Grafana webhook payload the relay can use (answered 400, dead-lettered)."""


@dataclass(frozen=True)
class Scope:
    """What a drop alert's causes are computed over."""

    provider: str
    carrier: str | None
    province: str | None
    start_ms: int
    end_ms: int
    baseline: Baseline


_decoder = msgspec.json.Decoder(GrafanaPayload)


def parse(raw: bytes) -> list[tuple[Alert, Scope | None]]:
    """The payload's alerts, each with the scope of its causes (None: not a firing drop). PayloadError
    when the body is not a usable payload."""
    try:
        payload = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PayloadError(f"not a Grafana webhook payload: {exc}") from None
    return [to_alert(a, f"alerts[{i}]") for i, a in enumerate(payload.alerts)]


def to_alert(g: GrafanaAlert, where: str = "alert") -> tuple[Alert, Scope | None]:
    if g.status not in ("firing", "resolved"):
        raise PayloadError(f"{where}.status must be firing or resolved, not {g.status!r}")
    started = _ms(g.starts_at, f"{where}.startsAt")
    ended = _ms(g.ends_at, f"{where}.endsAt") if g.ends_at else None
    if started is None:
        raise PayloadError(f"{where}.startsAt is missing (the zero time)")
    rule = rule_uid(g)
    if not rule:
        raise PayloadError(f"{where} has no alertname label nor a rule in its generatorURL")
    window_ms, default_baseline = DROP_RULES.get(rule, (HOUR_MS, "previous"))
    at = started if g.status == "firing" else (ended or started)
    summary = g.annotations.get("summary") or g.labels.get("alertname", rule)
    alert = Alert(rule=rule, key="/".join(g.labels[k] for k in KEY_LABELS if g.labels.get(k)), state=g.status,
                  value=_value(g.values), threshold=_THRESHOLDS.get(rule, 0.0),
                  window_seconds=window_ms // 1000 if _is_drop(rule, g.labels) else _WINDOWS.get(rule, 0),
                  started_at_ms=started, at_ms=at, summary=summary if g.status == "firing" else f"resolved: {summary}",
                  source=SOURCE)
    if g.status != "firing" or not _is_drop(rule, g.labels):
        return alert, None
    return alert, _scope(g.labels, started, window_ms, default_baseline, where)


def rule_uid(g: GrafanaAlert) -> str:
    """The Grafana rule's uid: by its title (alertname), from its generatorURL, else the alertname."""
    name = g.labels.get("alertname", "")
    found = _UIDS.get(name) or (m.group(1) if (m := _RULE_UID.search(g.generator_url)) else "")
    return found or name


def _is_drop(rule: str, labels: dict[str, str]) -> bool:
    return rule in DROP_RULES or "baseline" in labels


def _scope(labels: dict[str, str], started: int, window_ms: int, default: Baseline, where: str) -> Scope | None:
    provider = labels.get("provider", "")
    carrier = _CARRIERS.get(labels.get("carrier", ""))
    province = labels.get("province") or None
    given = labels.get("baseline") or default
    if given not in BASELINES:
        raise PayloadError(f"{where}.labels.baseline must be one of {', '.join(BASELINES)}, not {given!r}")
    baseline: Baseline = "week" if given == "week" else "previous"
    if provider not in PROVIDERS or (labels.get("carrier") and carrier is None) or (
            province is not None and province not in PROVINCES):
        log.warning("relay.no_scope", provider=provider[:40], carrier=labels.get("carrier", "")[:40],
                    province=(province or "")[:40])
        return None  # relayed without causes: why.py counts known providers, carriers and provinces only
    return Scope(provider, carrier, province, started - window_ms, started, baseline)


def _ms(text: str, where: str) -> int | None:
    """Epoch ms of an RFC 3339 time; None for Go's zero time (0001-01-01T00:00:00Z: not set)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"{where} is not an RFC 3339 time: {text[:60]!r}") from None
    if at.tzinfo is None:
        raise PayloadError(f"{where} has no offset: {text[:60]!r}")
    return None if at.year < 2000 else int(at.timestamp() * 1000)


def _value(values: dict[str, float | None] | None) -> float:
    """The reduced value (B), else the first number Grafana gives."""
    numbers = {k: v for k, v in (values or {}).items() if v is not None}
    return float(numbers.get("B", next(iter(numbers.values()), 0.0)))


def _rules() -> tuple[dict[str, str], dict[str, float], dict[str, int]]:
    uids, thresholds, windows = {}, {}, {}
    for r in alerting.rules():
        uids[r["title"]] = r["uid"]
        windows[r["uid"]] = int(r["data"][0]["relativeTimeRange"]["from"])
        conditions = r["data"][-1]["model"].get("conditions") or [{}]
        thresholds[r["uid"]] = float(conditions[0].get("evaluator", {}).get("params", [0.0])[0])
    return uids, thresholds, windows


_UIDS, _THRESHOLDS, _WINDOWS = _rules()


# --- causes, publishing, the endpoint ----------------------------------------------------------------
def causes(query: Query, scope: Scope, top: int = 3) -> list[Cause]:
    """The causes of a drop over its scope (dashboards/why.py)."""
    return why(query, scope.provider, scope.carrier, scope.start_ms, scope.end_ms, baseline=scope.baseline,
               top=top, province=scope.province)


def explained(query: Query, alerts: Sequence[tuple[Alert, Scope | None]]) -> list[Alert]:
    """Each alert with its causes (a firing drop) and their baseline; a failed count leaves it without."""
    out = []
    for alert, scope in alerts:
        if scope is not None:
            try:
                found = causes(query, scope)
            except Exception as exc:  # noqa: BLE001 - relayed without causes rather than not at all
                log.warning("relay.causes_failed", rule=alert.rule, key=alert.key, error=type(exc).__name__)
                found = []
            alert = msgspec.structs.replace(alert, causes=found, baseline=scope.baseline if found else "")
        out.append(alert)
    return out


def install(app: web.Application, query: Query, publisher: Publishes, webhooks: Callable[[], Iterable[Webhook]],
            token: str | None) -> None:
    """Add POST /v1/grafana/alerts to `app` (the query endpoint's). `query` is the warehouse's read (run
    in a thread); `webhooks` gives the hooks at the time of a post; `token`: SMS_QUERY_TOKEN, required as
    `Authorization: Bearer` when set."""

    async def relay(request: web.Request) -> web.Response:
        if token is not None and not bearer_authorized(request, token):
            return web.json_response({"error": "invalid or missing token (Authorization: Bearer, SMS_QUERY_TOKEN)"},
                                     status=401)
        raw = await request.read()
        try:
            try:
                parsed = parse(raw)
            except PayloadError as exc:
                await publisher.dead_letter(raw, str(exc), PATH)
                return web.json_response({"error": str(exc)[:500]}, status=400)
            alerts = await asyncio.to_thread(explained, query, parsed)
            for alert in alerts:
                await publisher.publish_record(topics.ALERTS, alert.record_key(), msgspec.json.encode(alert), PATH)
        except BrokerUnavailable as exc:
            return web.json_response({"error": f"broker unavailable: {exc}"[:500]}, status=503)
        hooks = tuple(webhooks())
        for alert in alerts:
            log.warning("alert", source=SOURCE, rule=alert.rule, key=alert.key, state=alert.state,
                        causes=len(alert.causes))
            post_webhooks(hooks, alert)
        return web.json_response({"relayed": [{"rule": a.rule, "key": a.key, "state": a.state,
                                               "causes": len(a.causes)} for a in alerts]})

    app.router.add_post(PATH, relay)


# --- the Grafana side: contact point and notification policy (the file, and dashboards push) ----------
CONTACT_POINT = "sms-relay"
DEFAULT_RECEIVER = "grafana-default-email"  # the root of Grafana's default policy tree, kept for other folders
COMPOSE_SERVICE = "worker"  # docker-compose.yml: the service holding the warehouse and the query endpoint
COMPOSE_PORT = 8081  # its SMS_QUERY_PORT
BEARER_VARIABLE = "SMS_QUERY_TOKEN"  # in Grafana's environment too; interpolated into the contact point's settings
RELAY_URL = f"http://{COMPOSE_SERVICE}:{COMPOSE_PORT}{PATH}"
FILE = alerting.ARTEFACTS_DIR / "provisioning" / "alerting" / "sms-relay.yaml"


GROUP_BY = ["grafana_folder", "alertname"]


def contact_point(url: str, credentials: str) -> dict[str, Any]:
    """The webhook integration of the contact point CONTACT_POINT: POST to the relay at `url` with
    `Authorization: Bearer <credentials>` (the file gives $SMS_QUERY_TOKEN, `dashboards push` the token).
    One shape for the provisioning file's receiver and the provisioning API's contact point."""
    return {"uid": CONTACT_POINT, "type": "webhook", "disableResolveMessage": False,
            "settings": {"url": url, "httpMethod": "POST", "authorization_scheme": "Bearer",
                         "authorization_credentials": credentials}}


def route(folder: str = alerting.FOLDER) -> dict[str, Any]:
    """The notification policy routing the alerts of the folder titled `folder` (Grafana's grafana_folder
    label is the folder's title) to CONTACT_POINT; for the file and `dashboards push` alike."""
    return {"receiver": CONTACT_POINT, "object_matchers": [["grafana_folder", "=", folder]],
            "group_by": list(GROUP_BY), "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"}


def provisioning(url: str = RELAY_URL) -> dict[str, Any]:
    """The contact point (a webhook to the relay, bearer token from $SMS_QUERY_TOKEN) and the notification
    policy routing the SMS folder's alerts to it (apiVersion 1). The policy file replaces the org's policy
    tree: its root stays Grafana's default receiver, so alerts of other folders go where they went."""
    return {
        "apiVersion": 1,
        "contactPoints": [{"orgId": 1, "name": CONTACT_POINT,
                           "receivers": [contact_point(url, f"${BEARER_VARIABLE}")]}],
        "policies": [{"orgId": 1, "receiver": DEFAULT_RECEIVER, "group_by": list(GROUP_BY), "routes": [route()]}],
    }


def render(doc: dict[str, Any] | None = None) -> str:
    header = "# Generated by `python -m sms_analytics.dashboards.relay`: do not edit by hand.\n"
    return header + yaml.safe_dump(doc if doc is not None else provisioning(), sort_keys=False, allow_unicode=True,
                                   width=120)


def main(argv: list[str] | None = None) -> int:
    """Write the provisioning file (argv[0], default FILE) and print its path."""
    path = Path(argv[0]) if argv else FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
