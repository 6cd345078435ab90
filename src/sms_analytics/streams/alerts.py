"""In-stream alert detectors on sliding windows: delivery-rate drop (per provider, per
provider/carrier and per provider/carrier/province), receipt blackout (receipts stalled while sends continue), p95 latency above
an SLO, and a conversion-rate drop of a verification-code template (issue 16). Fed by the join as it processes events; evaluated on a timer; each alert fires once and is
followed by one `resolved`. A firing alert resolves only once the value is clearly back (delivery
rate ≥ floor + 0.05, p95 ≤ 0.9 × SLO), so a value hovering at the threshold does not flap. Rules and
thresholds are `AlertRules` of the settings (the packaged alert_rules.yaml, or SMS_ALERT_RULES over
it).

A delivery-rate alert that fires carries its root cause (issue 17): the top `delivery_rate.causes`
slices over carrier, province, template, sign and error code that hold the excess failures of the
alert's scope against the previous windows (model/rootcause.py `explain`; the dimensions the scope
fixes are left out: a province alert is explained by template, sign and code). The baseline is the
`delivery_rate.baseline_windows` windows before the current one, summed (3: the quarter hour before a
5-minute window): one previous window alone is often already in the drop when the alert fires (a
rate falls below the floor only once most of the window is in the outage, and receipts arrive in
pushes), which would hide the very slices that changed. For that the detector keeps, per provider,
the outcomes counted per combination (carrier, province, template, sign, error code) in coarse
buckets (a fifth of the window) over baseline_windows + 1 windows; a window is the buckets that
start within it (to a bucket's width). A bucket holds at most SLICE_COMBOS_PER_BUCKET combinations;
past that, new ones are counted under template and sign OTHER, so memory is bounded whatever the
cardinality. A week of slices is the warehouse's (`sms-analytics why --baseline week`, and the
Grafana rules relayed through dashboards/relay.py).

Where this ends: alerts as values; sending them is agents.py's."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from sms_analytics.model.knowledge import KnowledgeBase
from sms_analytics.model.rootcause import UNKNOWN_LABEL, Cause, SliceCounts, WindowCounts, explain
from sms_analytics.settings import AlertRules, ConversionRateRule

# The conversion rule names a conversion's template from the message it converts when the conversion
# does not say it: the templates of the messages delivered most recently, at most this many.
RECENT_DELIVERED = 200_000
SLICE_COMBOS_PER_BUCKET = 20_000  # distinct (carrier, province, template, sign, code) per provider and bucket
OTHER = "(other)"  # the template and sign of combinations past that bound
SLICE_BUCKETS_PER_WINDOW = 5

# (provider, carrier, province, template, sign, error code) -> [outcomes, failures]
Combo = tuple[str, str, str, str, str, str]
BASELINE_TEXT = {"previous": "the time just before", "week": "the same hour of the last 7 days"}
Meaning = Callable[[str, str, str], str]  # (provider, error code, carrier) -> the code's meaning


class Alert(msgspec.Struct, kw_only=True):
    """A record on sms.alerts.v1 (and a row of sms.alerts)."""

    rule: str  # delivery_rate | receipt_blackout | latency_p95 | conversion_rate
    key: str  # provider, provider/carrier or provider/carrier/province; the template for conversion_rate
    state: str  # firing | resolved
    value: float
    threshold: float
    window_seconds: int
    started_at_ms: int
    at_ms: int
    summary: str
    source: str = "stream"  # stream, or grafana (a Grafana rule's alert relayed by dashboards/relay.py)
    baseline: str = ""  # what the causes were measured against: previous | week ("" without causes)
    causes: list[Cause] = msgspec.field(default_factory=list)  # the top slices explaining a drop, largest first

    def record_key(self) -> bytes:
        """Its key on sms.alerts.v1 (the stream's alerts and the relayed Grafana ones alike)."""
        return f"{self.rule}|{self.key}".encode()


class _Window:
    """Observations counted in one-second buckets, in arrival order, pruned to the window: the
    cost per observation is a few integer additions, whatever the rate."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: deque[list[Any]] = deque()  # [second_ms, count, positives, values]

    def add(self, at_ms: int, positive: bool = False, value: int | None = None) -> None:
        self.add_many(at_ms, 1, int(positive), () if value is None else (value,))

    def add_many(self, at_ms: int, count: int, positives: int = 0, values: Iterable[int] = ()) -> None:
        second = at_ms - at_ms % 1000
        buckets = self.buckets
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0, []])
        bucket = buckets[-1]
        bucket[1] += count
        bucket[2] += positives
        bucket[3].extend(values)

    def prune(self, since_ms: int) -> None:
        while self.buckets and self.buckets[0][0] < since_ms:
            self.buckets.popleft()

    def count(self) -> int:
        return sum(b[1] for b in self.buckets)

    def count_between(self, start_ms: int, end_ms: int) -> int:
        """Observations at start_ms <= t < end_ms."""
        return sum(b[1] for b in self.buckets if start_ms <= b[0] < end_ms)

    def positives(self) -> int:
        return sum(b[2] for b in self.buckets)

    def values(self) -> list[int]:
        return [v for b in self.buckets for v in b[3]]


def _window(windows: dict[str, _Window], key: str) -> _Window:
    window = windows.get(key)
    if window is None:
        window = windows[key] = _Window()
    return window


class Tally:
    """Observations of one batch, counted per key before they reach the windows: the join observes
    every event of a batch at the same time, so a batch costs the windows one addition per key,
    and an observation costs a dictionary update."""

    __slots__ = ("by_carrier", "by_province", "combos", "delivered", "latencies", "outcomes", "receipts", "sends")

    def __init__(self, by_carrier: bool, by_province: bool = False, slices: bool = False) -> None:
        self.by_carrier = by_carrier
        self.by_province = by_province
        self.combos: dict[Combo, list[int]] | None = {} if slices else None  # for the causes
        self.delivered: list[tuple[str, str]] = []  # (provider|message_id, template) of delivered messages
        self.sends: dict[str, int] = {}
        self.receipts: set[str] = set()
        self.outcomes: dict[str, list[int]] = {}  # key -> [count, delivered]
        self.latencies: dict[str, list[int]] = {}  # provider -> latencies of delivered messages

    def send(self, provider: str) -> Tally:
        self.sends[provider] = self.sends.get(provider, 0) + 1
        return self

    def receipt(self, provider: str) -> Tally:
        self.receipts.add(provider)
        return self

    def outcome(self, provider: str, carrier: str, delivered: bool, latency_ms: int | None, *, province: str = "",
                template: str = "", sign: str = "", error_code: str = "") -> Tally:
        self._count(provider, delivered)
        if self.by_carrier:
            self._count(f"{provider}/{carrier}", delivered)
        if self.by_province and province:
            self._count(f"{provider}/{carrier}/{province}", delivered)
        if self.combos is not None:
            combo = (provider, carrier, province, template, sign, "" if delivered else error_code)
            counts = self.combos.get(combo)
            if counts is None:
                counts = self.combos[combo] = [0, 0]
            counts[0] += 1
            if not delivered:
                counts[1] += 1
        if delivered and latency_ms is not None:
            values = self.latencies.get(provider)
            if values is None:
                values = self.latencies[provider] = []
            values.append(latency_ms)
        return self

    def delivered_template(self, provider: str, message_id: str, template: str) -> Tally:
        """A message delivered (for the conversion rule: its template's denominator)."""
        self.delivered.append((f"{provider}|{message_id}", template))
        return self

    def _count(self, key: str, delivered: bool) -> None:
        counts = self.outcomes.get(key)
        if counts is None:
            counts = self.outcomes[key] = [0, 0]
        counts[0] += 1
        if delivered:
            counts[1] += 1


class _Slices:
    """One provider's outcomes per combination (Combo without the provider) in coarse buckets."""

    __slots__ = ("buckets", "width_ms")

    def __init__(self, width_ms: int) -> None:
        self.width_ms = width_ms
        self.buckets: deque[tuple[int, dict[tuple[str, ...], list[int]]]] = deque()

    def add(self, at_ms: int, combo: tuple[str, ...], outcomes: int, failures: int) -> None:
        start = at_ms - at_ms % self.width_ms
        if not self.buckets or self.buckets[-1][0] != start:
            self.buckets.append((start, {}))
        counts = self.buckets[-1][1]
        found = counts.get(combo)
        if found is None:
            if len(counts) >= SLICE_COMBOS_PER_BUCKET:
                combo = (combo[0], combo[1], OTHER, OTHER, combo[4])
                found = counts.get(combo)
            if found is None:
                found = counts[combo] = [0, 0]
        found[0] += outcomes
        found[1] += failures

    def prune(self, since_ms: int) -> None:
        while self.buckets and self.buckets[0][0] < since_ms:
            self.buckets.popleft()

    def window(self, start_ms: int, end_ms: int, carrier: str, province: str) -> WindowCounts:
        """The counts of the buckets starting in [start_ms, end_ms) within a scope (carrier and province
        when given), sliced by every dimension the scope does not fix."""
        failures = total = 0
        parts: dict[tuple[str, str], list[int]] = {}

        def count(dimension: str, value: str, n: int, f: int) -> None:
            found = parts.get((dimension, value))
            if found is None:
                found = parts[(dimension, value)] = [0, 0]
            found[0] += n
            found[1] += f

        for start, counts in self.buckets:
            if not start_ms <= start < end_ms:
                continue
            for (c, p, template, sign, code), (n, f) in counts.items():
                if (carrier and c != carrier) or (province and p != province):
                    continue
                total += n
                failures += f
                if not carrier:
                    count("carrier", c, n, f)
                if not province:
                    count("province", p, n, f)
                count("template", template, n, f)
                count("sign", sign, n, f)
                if f:
                    count("error_code", code, f, f)
        return WindowCounts(failures=failures, total=total, slices=tuple(
            SliceCounts(dimension=d, value=v, failures=f, total=n) for (d, v), (n, f) in parts.items()))


def _knowledge_meaning(provider: str, code: str, carrier: str) -> str:
    return KnowledgeBase.load().meaning(provider, code, carrier)


class Detector:
    def __init__(self, rules: AlertRules, meaning: Meaning = _knowledge_meaning) -> None:
        self.rules = rules
        self.meaning = meaning
        self.slices: dict[str, _Slices] = {}  # provider -> its outcomes per combination, for the causes
        self.slice_width_ms = max(1000, rules.window_seconds * 1000 // SLICE_BUCKETS_PER_WINDOW)
        self.outcomes: dict[str, _Window] = {}  # key -> (at, delivered)
        self.latencies: dict[str, _Window] = {}  # provider -> (at, latency_ms)
        self.sends: dict[str, _Window] = {}
        self.last_receipt_ms: dict[str, int] = {}
        self.active: dict[tuple[str, str], Alert] = {}
        self.delivered_by_template: dict[str, _Window] = {}  # template -> delivered messages
        self.conversions_by_template: dict[str, _Window] = {}  # template -> conversions
        self.recent_templates: OrderedDict[str, str] = OrderedDict()  # provider|message_id -> template

    # --- feeding ----------------------------------------------------------------------------------
    def observe_send(self, provider: str, at_ms: int) -> None:
        self.add(Tally(self.rules.delivery_rate.by_carrier).send(provider), at_ms)

    def observe_receipt(self, provider: str, at_ms: int) -> None:
        self.add(Tally(self.rules.delivery_rate.by_carrier).receipt(provider), at_ms)

    def observe_outcome(self, provider: str, carrier: str, delivered: bool, latency_ms: int | None, at_ms: int,
                        **slice_values: str) -> None:
        """One outcome; `slice_values` (province, template, sign, error_code) as Tally.outcome takes them."""
        self.add(self.tally().outcome(provider, carrier, delivered, latency_ms, **slice_values), at_ms)

    def tally(self) -> Tally:
        """An empty tally for a batch of observations made at one time (see Tally)."""
        rule = self.rules.delivery_rate
        return Tally(rule.by_carrier, rule.by_province, slices=rule.causes > 0)

    def add(self, tally: Tally, at_ms: int) -> None:
        """Count a tally's observations in the windows, all at `at_ms`."""
        for provider, count in tally.sends.items():
            _window(self.sends, provider).add_many(at_ms, count)
            self.last_receipt_ms.setdefault(provider, at_ms)  # the lag counts from the first send seen
        for provider in tally.receipts:
            self.last_receipt_ms[provider] = at_ms
        for key, (count, positives) in tally.outcomes.items():
            _window(self.outcomes, key).add_many(at_ms, count, positives)
        for provider, values in tally.latencies.items():
            _window(self.latencies, provider).add_many(at_ms, len(values), 0, values)
        for (provider, *combo), (n, f) in (tally.combos or {}).items():
            slices = self.slices.get(provider)
            if slices is None:
                slices = self.slices[provider] = _Slices(self.slice_width_ms)
            slices.add(at_ms, tuple(combo), n, f)
        if self.rules.conversion_rate is not None:
            self._add_delivered(tally.delivered, at_ms)

    def _add_delivered(self, delivered: list[tuple[str, str]], at_ms: int) -> None:
        counts: dict[str, int] = {}
        for key, template in delivered:
            counts[template] = counts.get(template, 0) + 1
            self.recent_templates[key] = template
        while len(self.recent_templates) > RECENT_DELIVERED:
            self.recent_templates.popitem(last=False)
        for template, count in counts.items():
            _window(self.delivered_by_template, template).add_many(at_ms, count)

    def observe_conversion(self, provider: str, message_id: str, template: str, at_ms: int) -> None:
        """A conversion (sms.conversions.v1), under its template, or its message's as delivered here."""
        if self.rules.conversion_rate is None:
            return
        template = template or self.recent_templates.get(f"{provider}|{message_id}", "")
        if template:
            _window(self.conversions_by_template, template).add(at_ms)

    # --- evaluating -------------------------------------------------------------------------------
    def evaluate(self, now_ms: int) -> list[Alert]:
        since = now_ms - self.rules.window_seconds * 1000
        conditions: dict[tuple[str, str], tuple[bool, float, float, str]] = {}
        rate_rule, blackout, latency = self.rules.delivery_rate, self.rules.receipt_blackout, self.rules.latency_p95
        for key, window in self.outcomes.items():
            window.prune(since)
            n = window.count()
            if n:
                rate = window.positives() / n
                floor = rate_rule.floor + (0.05 if ("delivery_rate", key) in self.active else 0.0)
                volume = rate_rule.region_min_volume if key.count("/") == 2 else rate_rule.min_volume
                conditions[("delivery_rate", key)] = (n >= volume and rate < floor, rate, rate_rule.floor,
                                                      f"delivery rate of {key} is {rate:.1%} over {n} outcomes")
        kept = (rate_rule.baseline_windows + 1) * self.rules.window_seconds * 1000 + self.slice_width_ms
        for slices in self.slices.values():
            slices.prune(now_ms - kept)
        for provider, window in self.sends.items():
            window.prune(since)
            lag = (now_ms - self.last_receipt_ms.get(provider, now_ms)) / 1000
            sends = window.count()
            conditions[("receipt_blackout", provider)] = (
                sends >= blackout.min_sends and lag > blackout.lag_seconds, lag, blackout.lag_seconds,
                f"no {provider} receipt for {lag:.0f} s while {sends} messages were sent")
        for provider, window in self.latencies.items():
            window.prune(since)
            values = sorted(window.values())
            if values:
                p95 = float(values[max(0, math.ceil(0.95 * len(values)) - 1)])  # nearest rank
                slo = latency.slo_ms * (0.9 if ("latency_p95", provider) in self.active else 1.0)
                conditions[("latency_p95", provider)] = (len(values) >= latency.min_volume and p95 > slo,
                                                         p95, latency.slo_ms,
                                                         f"p95 delivery latency of {provider} is {p95 / 1000:.1f} s")
        if self.rules.conversion_rate is not None:
            conditions.update(self._conversion_conditions(self.rules.conversion_rate, now_ms))
        return self._transitions(conditions, now_ms)

    def _conversion_conditions(self, rule: ConversionRateRule,
                               now_ms: int) -> dict[tuple[str, str], tuple[bool, float, float, str]]:
        """Per tracked template: the window's conversions per delivered message below baseline × (1 - drop).
        Tracked: at least min_baseline_conversions conversions in the baseline (conversions are reported for
        verification codes). HOOK(sms.templates): once the template metadata (migration 0011, type =
        'verification') reaches the worker, a template of that type is tracked whatever its baseline
        conversions; a template of another type never is."""
        window_start = now_ms - self.rules.window_seconds * 1000
        baseline_start = window_start - rule.baseline_seconds * 1000
        out: dict[tuple[str, str], tuple[bool, float, float, str]] = {}
        for template, conversions in self.conversions_by_template.items():
            delivered = _window(self.delivered_by_template, template)
            conversions.prune(baseline_start)
            delivered.prune(baseline_start)
            baseline = conversions.count_between(baseline_start, window_start)
            baseline_delivered = delivered.count_between(baseline_start, window_start)
            if baseline < rule.min_baseline_conversions or not baseline_delivered:
                continue
            expected = min(1.0, baseline / baseline_delivered)
            n = delivered.count_between(window_start, now_ms + 1)
            rate = conversions.count_between(window_start, now_ms + 1) / n if n else 0.0
            floor = expected * (1 - rule.drop) * (1.1 if ("conversion_rate", template) in self.active else 1.0)
            out[("conversion_rate", template)] = (
                n >= rule.min_volume and rate < floor, rate, expected * (1 - rule.drop),
                f"conversion rate of template {template} is {rate:.1%} over {n} delivered (baseline {expected:.1%})")
        return out

    def _transitions(self, conditions: dict[tuple[str, str], tuple[bool, float, float, str]], now_ms: int) -> list[Alert]:
        out: list[Alert] = []
        for (rule, key), (holds, value, threshold, summary) in sorted(conditions.items()):
            active = self.active.get((rule, key))
            if holds and active is None:
                causes = self.causes(key, now_ms) if rule == "delivery_rate" else []
                alert = Alert(rule=rule, key=key, state="firing", value=value, threshold=threshold,
                              window_seconds=self.rules.window_seconds, started_at_ms=now_ms, at_ms=now_ms,
                              summary=summary, baseline="previous" if causes else "", causes=causes)
                self.active[(rule, key)] = alert
                out.append(alert)
            elif not holds and active is not None:
                del self.active[(rule, key)]
                out.append(Alert(rule=rule, key=key, state="resolved", value=value, threshold=threshold,
                                 window_seconds=self.rules.window_seconds, started_at_ms=active.started_at_ms,
                                 at_ms=now_ms, summary=f"resolved: {summary}"))
        return out


    def causes(self, key: str, now_ms: int) -> list[Cause]:
        """The top slices explaining a delivery-rate drop of `key` (provider[/carrier[/province]]) in the
        window ending now, against the baseline_windows before it (see the module docstring)."""
        top = self.rules.delivery_rate.causes
        provider, _, rest = key.partition("/")
        carrier, _, province = rest.partition("/")
        slices = self.slices.get(provider)
        if not top or slices is None:
            return []
        window_ms = self.rules.window_seconds * 1000
        start = now_ms - window_ms
        current = slices.window(start, now_ms + 1, carrier, province)
        baseline = slices.window(start - self.rules.delivery_rate.baseline_windows * window_ms, start, carrier, province)
        return explain(current, baseline, top=top, meaning=lambda code: self.meaning(provider, code, carrier))


def cause_lines(causes: list[Cause]) -> list[str]:
    """A cause a line, for the text formats and the log: rank, slice, share, rates, an error code's meaning."""
    lines = []
    for i, c in enumerate(causes, 1):
        line = (f"{i}. {c.dimension}={c.value or UNKNOWN_LABEL}: {c.share:.0%} of the excess failures, "
                f"failure rate {c.rate:.1%} (baseline {c.baseline_rate:.1%})")
        lines.append(line + (f" — {c.meaning}" if c.meaning else ""))
    return lines


def webhook_body(alert: Alert, fmt: str) -> dict[str, Any]:
    """The alert in a webhook's format: generic JSON (the record itself, causes included), DingTalk,
    WeCom or Slack (text, a cause a line under the headline)."""
    text = f"[{alert.state.upper()}] {alert.rule} {alert.key}: {alert.summary}"
    if alert.causes:
        text += f"\nwhy (against {BASELINE_TEXT.get(alert.baseline, alert.baseline)}):\n"
        text += "\n".join(cause_lines(alert.causes))
    if fmt == "dingtalk":
        return {"msgtype": "text", "text": {"content": text}}
    if fmt == "wecom":
        return {"msgtype": "text", "text": {"content": text}}
    if fmt == "slack":
        return {"text": text}
    return msgspec.to_builtins(alert)
