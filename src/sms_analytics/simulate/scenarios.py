"""The scenario switches of a simulated run: an :class:`Outage` (one carrier delivers only at a
given rate for a while), a :class:`Blackout` (one provider's receipt pushes stop for a while,
lost or caught up afterwards) and :class:`QuotaLow` (Tencent's package quota nearly used up), and
``parse_scenario`` that reads them from command-line strings
(`sms-analytics simulate --scenario`). What an outage does to the plan is simulate/plan.py's, what a
blackout does to the pushes is simulate/driver.py's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sms_analytics.model.providers import CARRIER_NAMES, PROVIDERS, Provider
from sms_analytics.model.region import PROVINCES
from sms_analytics.simulate.payloads.common import CARRIER_WEIGHTS, Carrier


@dataclass(frozen=True, slots=True)
class Outage:
    """A carrier outage: messages to ``carrier`` sent in ``[start, start + duration)`` (seconds after
    the run start) are delivered only at ``delivery_rate``; the rest fail with that carrier's receipt
    codes from the seed tables (KX: its §12.2 codes). Messages rejected at submit and messages that
    never get a receipt are unaffected.

    Narrowed (issue 17): ``province`` (short name, model/region.py) limits it to the numbers whose
    segment lies in that province (a regional outage, 广东移动); ``template`` to the messages of one
    template, on every carrier when ``carrier`` is None (a template failure). A narrowed outage is
    one fault, so its failures all carry one code: the first of the provider × carrier table
    (``targeted``)."""

    carrier: Carrier | None
    delivery_rate: float
    start: float
    duration: float
    province: str | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        if self.carrier is None and self.template is None:
            raise ValueError("an outage of every carrier needs a template")
        if self.carrier is not None and self.carrier not in CARRIER_WEIGHTS:
            raise ValueError(f"unknown carrier {self.carrier!r} (one of {', '.join(CARRIER_WEIGHTS)})")
        if self.province is not None and self.province not in PROVINCES:
            raise ValueError(f"unknown province {self.province!r} (one of {', '.join(PROVINCES)})")
        if not 0.0 <= self.delivery_rate <= 1.0:
            raise ValueError("delivery_rate must be within 0..1")
        _check_window(self.start, self.duration)

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def targeted(self) -> bool:
        return self.province is not None or self.template is not None

    def covers(self, carrier: Carrier, at: float, province: str | None = None, template: str | None = None) -> bool:
        """Whether a message (its carrier, send time, and where the outage is narrowed its province and
        template) is in the outage."""
        return ((self.carrier is None or carrier == self.carrier) and self.start <= at < self.end
                and (self.province is None or province == self.province)
                and (self.template is None or template == self.template))


@dataclass(frozen=True, slots=True)
class Blackout:
    """A provider's receipt pushes stop during ``[start, start + duration)`` (seconds after the run
    start). Receipts that would have been pushed in the window are never posted (their messages stay
    pending), or with ``catch_up=True`` are posted once the window ends. Send records and uplinks
    are not affected."""

    provider: Provider
    start: float
    duration: float
    catch_up: bool = False

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown provider {self.provider!r} (one of {', '.join(PROVIDERS)})")
        _check_window(self.start, self.duration)

    @property
    def end(self) -> float:
        return self.start + self.duration

    def covers(self, provider: Provider, now: float) -> bool:
        return provider == self.provider and self.start <= now < self.end


@dataclass(frozen=True, slots=True)
class QuotaLow:
    """Tencent's package quota nearly used up: the simulator's packages leave only ``left`` messages
    (``TencentSimulator.set_quota_left``), so SmsPackagesStatistics shows the quota running out and
    alert sms-quota-runout fires at the run's send rate. Only the provider-API lane of ``sms-analytics
    run`` has a Tencent simulator: ``simulate`` (payloads posted straight to a receiver) refuses it.
    Sends beyond ``left`` are refused by the simulator (套餐包余量不足)."""

    left: int

    def __post_init__(self) -> None:
        if self.left < 0:
            raise ValueError("left must be a number of messages >= 0")


Scenario = Outage | Blackout | QuotaLow


def _check_window(start: float, duration: float) -> None:
    if not (math.isfinite(start) and start >= 0):
        raise ValueError("start must be a finite number of seconds >= 0")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError("duration must be a finite number of seconds > 0")


# A carrier by its Chinese name, its English one (mobile, chinamobile) or its abbreviation (cmcc).
_SIMULATED_NAMES = {english: chinese for english, chinese in CARRIER_NAMES.items()
                    if chinese in CARRIER_WEIGHTS}  # every carrier the simulator has numbers of
CARRIER_ALIASES: dict[str, Carrier] = {
    **{carrier: carrier for carrier in CARRIER_WEIGHTS},
    **_SIMULATED_NAMES,
    **{f"china{english}": carrier for english, carrier in _SIMULATED_NAMES.items()},
    "cmcc": "移动", "cucc": "联通", "ctcc": "电信",
}
PROVIDER_ALIASES: dict[str, Provider] = {
    **{provider: provider for provider in PROVIDERS},
    "alibaba": "aliyun", "000": "aliyun", "001": "kx", "qcloud": "tencent", "002": "tencent",
}
_CATCH_UP_WORDS = {"catch_up", "catch-up", "catchup", "1", "true", "yes"}
_NO_CATCH_UP_WORDS = {"drop", "0", "false", "no"}


def parse_scenario(text: str) -> Scenario:
    """A scenario switch from a command-line string (fields separated by ``:``).

    * ``outage:<carrier>:<delivery_rate>:<start>:<duration>`` -> :class:`Outage`, e.g.
      ``"outage:移动:0.3:10:30"``: messages to China Mobile sent from 10 s to 40 s after the start
      are delivered at 30%. ``<carrier>`` is 移动/联通/电信 or cmcc/cucc/ctcc
      (mobile/unicom/telecom); ``<delivery_rate>`` is 0..1. ``<carrier>@<province>`` narrows it to
      one province's numbers: ``"outage:mobile@广东:0.3:10:30"`` (short names: 广东, 北京, 内蒙古).
    * ``template:<template>:<delivery_rate>:<start>:<duration>`` -> :class:`Outage` of one template
      on every carrier, e.g. ``"template:SMS_153055065:0:10:30"``.
    * ``blackout:<provider>:<start>:<duration>[:catch_up]`` -> :class:`Blackout`, e.g.
      ``"blackout:tencent:5:20"``: Tencent's receipt pushes stop from 5 s to 25 s after the start
      and the receipts of that window are lost; with a fifth field ``catch_up`` they are posted
      when the window ends (``drop``, the default, loses them). ``<provider>`` is aliyun/tencent/kx.

    * ``quota:tencent:<left>`` -> :class:`QuotaLow`, e.g. ``"quota:tencent:50"``: Tencent's
      package quota has 50 messages left (``sms-analytics run`` only).

    Times are seconds relative to the run start. Raises ValueError on anything else.
    """
    parts = [part.strip() for part in text.strip().split(":")]
    kind = parts[0].lower()
    try:
        if kind == "outage" and len(parts) == 5:
            name, _, province = parts[1].partition("@")  # "@" with nothing after it: the province is ""
            carrier = CARRIER_ALIASES.get(name.strip().lower())
            if carrier is None:
                raise ValueError(f"unknown carrier {name!r}")
            return Outage(carrier, float(parts[2]), float(parts[3]), float(parts[4]),
                          province=province.strip() if _ else None)
        if kind == "template" and len(parts) == 5 and parts[1]:
            return Outage(None, float(parts[2]), float(parts[3]), float(parts[4]), template=parts[1])
        if kind == "blackout" and len(parts) in (4, 5):
            provider = PROVIDER_ALIASES.get(parts[1].lower())
            if provider is None:
                raise ValueError(f"unknown provider {parts[1]!r}")
            mode = parts[4].lower() if len(parts) == 5 else "drop"
            if mode not in _CATCH_UP_WORDS | _NO_CATCH_UP_WORDS:
                raise ValueError(f"the fifth field must be catch_up or drop, not {parts[4]!r}")
            return Blackout(provider, float(parts[2]), float(parts[3]), catch_up=mode in _CATCH_UP_WORDS)
        if kind == "quota" and len(parts) == 3:
            if PROVIDER_ALIASES.get(parts[1].lower()) != "tencent":
                raise ValueError(f"only Tencent has a package quota, not {parts[1]!r}")
            return QuotaLow(int(parts[2]))
    except ValueError as exc:
        raise ValueError(f"scenario {text!r}: {exc}") from None
    raise ValueError(
        f"scenario {text!r}: expected outage:<carrier>[@<province>]:<rate>:<start>:<duration>, "
        "template:<template>:<rate>:<start>:<duration>, "
        "blackout:<provider>:<start>:<duration>[:catch_up] or quota:tencent:<left>"
    )


def as_tuple(value: Any, kind: type) -> tuple[Any, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, kind) else tuple(value)
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"expected {kind.__name__}, got {item!r}")
    return items
