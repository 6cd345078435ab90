"""The run summary: counts, delivery rate and latency per provider, top failure reasons.

Metrics as defined once in the README: delivery rate = delivered / (delivered + failed + expired);
pending messages are shown beside it, not in it; latency percentiles over delivered messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Query = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]

PER_PROVIDER = """
SELECT provider,
       count() AS sent,
       countIf(status = 'delivered') AS delivered,
       countIf(status = 'failed') AS failed,
       countIf(status = 'expired') AS expired,
       countIf(status = 'pending') AS pending,
       round(if(delivered + failed + expired = 0, nan, delivered / (delivered + failed + expired)), 4) AS delivery_rate,
       quantileExactIf(0.5)(latency_ms, status = 'delivered') AS p50_latency_ms,
       quantileExactIf(0.95)(latency_ms, status = 'delivered') AS p95_latency_ms
FROM sms.messages
GROUP BY provider
ORDER BY provider
"""

TOP_FAILURES = """
SELECT provider, error_code, any(error_message) AS error_message, failure_category, count() AS messages
FROM sms.messages
WHERE status = 'failed'
GROUP BY provider, error_code, failure_category
ORDER BY messages DESC, provider, error_code
LIMIT 10
"""

# The metadata feeds' newest pull: templates per provider and type (the provider's, or SMS_TEMPLATE_NAMES's
# where it gives one: sms.template_info_dict), signs per provider.
TEMPLATES_BY_TYPE = """
SELECT provider, dictGetOrDefault('sms.template_info_dict', 'type', (provider, template_code), type) AS type,
       count() AS templates
FROM sms.templates FINAL
GROUP BY provider, type
ORDER BY provider, type
"""
SIGNS = """
SELECT provider, count() AS signs, countIf(status = 'approved') AS approved
FROM sms.signs FINAL
GROUP BY provider
ORDER BY provider
"""


def collect_metadata(query: Query) -> dict[str, dict[str, Any]]:
    """Per provider: {"templates": {type: count}, "signs": n, "approved_signs": n}, from sms.templates and sms.signs."""
    out: dict[str, dict[str, Any]] = {}
    for provider, template_type, count in query(TEMPLATES_BY_TYPE)[1]:
        entry = out.setdefault(str(provider), {"templates": {}, "signs": 0, "approved_signs": 0})
        entry["templates"][str(template_type)] = int(count)
    for provider, signs, approved in query(SIGNS)[1]:
        entry = out.setdefault(str(provider), {"templates": {}, "signs": 0, "approved_signs": 0})
        entry["signs"], entry["approved_signs"] = int(signs), int(approved)
    return out


def render_metadata(metadata: dict[str, dict[str, Any]]) -> str:
    """One line per provider: its templates by type and its signs."""
    if not metadata:
        return "template and sign metadata: (none pulled)"
    lines = ["template and sign metadata (metadata feeds):"]
    for provider, entry in sorted(metadata.items()):
        types = ", ".join(f"{t} {n}" for t, n in sorted(entry["templates"].items())) or "none"
        lines.append(f"  {provider:<8} templates: {sum(entry['templates'].values())} ({types}); "
                     f"signs: {entry['signs']} ({entry['approved_signs']} approved)")
    return "\n".join(lines)


# The provider-side feeds: each account's newest balance or package quota (KX Balance, Tencent
# SmsPackagesStatistics) with the provider's sends of the last hour, and the provider statistics of
# the last two days against ours (sms.reconciliation: Tencent hours, Alibaba China-time days).
BALANCES = """
SELECT b.provider, b.account, b.left_now, ifNull(s.sends, 0) AS sends_last_hour
FROM
(
    SELECT provider, account, argMax(balance, at) AS left_now
    FROM sms.provider_balance
    WHERE at > now() - INTERVAL 1 DAY
    GROUP BY provider, account
) AS b
LEFT JOIN
(
    SELECT provider, toNullable(count()) AS sends FROM sms.messages
    WHERE sent_at > now() - INTERVAL 1 HOUR GROUP BY provider
) AS s ON b.provider = s.provider
ORDER BY b.provider, b.account
"""
RECONCILIATION = """
SELECT provider, hour, period_hours, our_sent, their_sent, our_delivered, their_delivered, our_failed, their_failed
FROM sms.reconciliation
WHERE hour > now() - INTERVAL 2 DAY AND their_sent > 0
ORDER BY provider, hour
"""


def collect_provider_side(query: Query) -> dict[str, list[dict[str, Any]]]:
    """{"balances": [...], "reconciliation": [...]}, rows as dicts of the queries' columns."""
    def as_dicts(sql: str) -> list[dict[str, Any]]:
        columns, rows = query(sql)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    return {"balances": as_dicts(BALANCES), "reconciliation": as_dicts(RECONCILIATION)}


def render_provider_side(side: dict[str, list[dict[str, Any]]], quota_hours: float) -> str:
    """Balances with the hours they last at the last hour's rate (flagged under `quota_hours`, the
    SMS_QUOTA_ALERT_HOURS of alert sms-quota-runout), then ours against the provider statistics."""
    lines = ["provider balances and package quotas (messages left; hours at the last hour's send rate):"]
    for b in side["balances"] or [{}]:
        if not b:
            lines.append("  (none pulled)")
            continue
        sends, left = int(b["sends_last_hour"]), int(b["left_now"])
        hours = left / sends if sends else None
        runs_out = hours is not None and hours < quota_hours
        lines.append(f"  {b['provider']:<8} {b['account']:<12} {left:>10}  "
                     + ("n/a (no sends)" if hours is None else f"{hours:.1f} h")
                     + (f"  RUNS OUT within {quota_hours:g} h" if runs_out else ""))
    lines.append("reconciliation with provider statistics (ours/theirs; theirs count the simulators' traffic only):")
    for r in side["reconciliation"] or [{}]:
        if not r:
            lines.append("  (no provider statistics yet)")
            continue
        period = "day (China)" if int(r["period_hours"]) == 24 else "hour"
        lines.append(f"  {r['provider']:<8} {r['hour']:%Y-%m-%d %H:%M} UTC {period:<11} sent {r['our_sent']}/{r['their_sent']}"
                     f", delivered {r['our_delivered']}/{r['their_delivered']}, failed {r['our_failed']}/{r['their_failed']}")
    return "\n".join(lines)


def collect(query: Query) -> dict[str, Any]:
    cols, rows = query(PER_PROVIDER)
    providers = [dict(zip(cols, row, strict=True)) for row in rows]
    cols, rows = query(TOP_FAILURES)
    failures = [dict(zip(cols, row, strict=True)) for row in rows]
    counts = {k: sum(int(p[k]) for p in providers) for k in ("sent", "delivered", "failed", "expired", "pending")}
    final = counts["delivered"] + counts["failed"] + counts["expired"]
    rate = round(counts["delivered"] / final, 4) if final else None
    return {"totals": {**counts, "delivery_rate": rate}, "providers": providers, "top_failures": failures}


def render(summary: dict[str, Any]) -> str:
    t = summary["totals"]
    rate = "n/a" if t["delivery_rate"] is None else f"{t['delivery_rate']:.2%}"
    lines = [
        (f"messages: sent {t['sent']}, delivered {t['delivered']}, failed {t['failed']}, expired {t['expired']}, "
         f"pending {t['pending']}; "
         f"delivery rate {rate}"),
        "",
        (f"{'provider':<9} {'sent':>7} {'delivered':>9} {'failed':>7} {'expired':>7} {'pending':>7} {'rate':>8} "
         f"{'p50 ms':>8} {'p95 ms':>8}"),
    ]
    for p in summary["providers"]:
        r = p["delivery_rate"]
        rate_text = "n/a" if r is None or r != r else f"{r:.2%}"
        lines.append(
            f"{p['provider']:<9} {p['sent']:>7} {p['delivered']:>9} {p['failed']:>7} {p['expired']:>7} {p['pending']:>7} "
            f"{rate_text:>8} {_num(p['p50_latency_ms']):>8} {_num(p['p95_latency_ms']):>8}"
        )
    lines += ["", "top failure reasons:"]
    if not summary["top_failures"]:
        lines.append("  (none)")
    for f in summary["top_failures"]:
        lines.append(
            f"  {f['messages']:>5}  {f['provider']:<8} {f['error_code']:<24} {f['failure_category']:<16} {f['error_message']}"
        )
    return "\n".join(lines)


def _num(value: Any) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{float(value):.0f}"
