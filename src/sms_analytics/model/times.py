"""Provider time formats -> epoch milliseconds (UTC).

Provider times without an offset are China time (UTC+8). A time outside the sanity window
(2000-01-01 .. now + 1 day) is rejected with a clear reason.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8))
_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_FUTURE_SLACK_MS = 86_400_000


class BadTime(ValueError):
    pass


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _checked(ms: int, raw: object) -> int:
    if ms < _MIN_MS or ms > now_ms() + _FUTURE_SLACK_MS:
        raise BadTime(f"time {raw!r} is outside the accepted window (2000-01-01 .. now+1d)")
    return ms


def _china_ms(dt: datetime) -> int:
    """Epoch milliseconds of a China-time wall clock reading (tzinfo=CHINA)."""
    return int(dt.timestamp() * 1000)


_CHINA_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def parse_china_datetime(value: object) -> int:
    """'2017-01-01 00:00:00' (Alibaba, Tencent), China time."""
    if not isinstance(value, str):
        raise BadTime(f"expected a 'YYYY-MM-DD HH:MM:SS' string, got {type(value).__name__}")
    text = value.strip()
    try:
        if _CHINA_DATETIME.fullmatch(text):  # the documented form, without strptime's cost
            dt = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                          int(text[17:19]), tzinfo=CHINA)
        else:
            dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        raise BadTime(f"time {value!r} is not 'YYYY-MM-DD HH:MM:SS'") from None
    return _checked(_china_ms(dt), value)


def parse_compact(value: object) -> int:
    """'20161012150400' (KX yyyyMMddHHmmss), China time."""
    if not isinstance(value, str) or len(value.strip()) != 14 or not value.strip().isdigit():
        raise BadTime(f"time {value!r} is not yyyyMMddHHmmss")
    try:
        dt = datetime.strptime(value.strip(), "%Y%m%d%H%M%S").replace(tzinfo=CHINA)
    except ValueError:
        raise BadTime(f"time {value!r} is not a valid yyyyMMddHHmmss date") from None
    return _checked(_china_ms(dt), value)


def parse_epoch_seconds(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadTime(f"expected epoch seconds, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise BadTime(f"time {value!r} is not a finite number")
    if not -1e11 < value < 1e11:  # so far out that milliseconds would overflow
        raise BadTime(f"time {value!r} is not a plausible epoch in seconds")
    return _checked(round(value * 1000), value)


def parse_instant(value: object) -> int:
    """Normalized API times: epoch seconds (number) or ISO-8601 *with* an offset."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return parse_epoch_seconds(value)
    if not isinstance(value, str):
        raise BadTime(f"expected ISO-8601 with offset or epoch seconds, got {type(value).__name__}")
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise BadTime(f"time {value!r} is not ISO-8601") from None
    if dt.tzinfo is None:
        raise BadTime(f"time {value!r} has no UTC offset")
    return _checked(int(dt.timestamp() * 1000), value)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


DURATION_UNITS_S: dict[str, float] = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31_536_000}
_DURATION = re.compile(r"\s*(?:\d+\s*(?:ms|s|m|h|d|w|y)\s*)*(?:\d+\s*)?")
_DURATION_PART = re.compile(r"(\d+)\s*(ms|s|m|h|d|w|y)?")


def parse_duration(text: object, *, units: tuple[str, ...] = tuple(DURATION_UNITS_S), bare: str | None = None) -> float:
    """A Grafana/Prometheus duration in seconds: `90m`, `1h30m`, `500ms`, ` 2w` (the one parser of
    dashboards/report.py's --since, dashboards/macros.py's $__timeGroup and dashboards/push.py's rule
    group intervals). `units`: the units accepted (ms s m h d w y); `bare`: the unit of a plain number
    such as `60` (None: a number needs a unit). ValueError on anything else (`1.5h`, `-1h`, `1 minute`, a
    non-string such as a YAML `interval: 60`)."""
    parts = _DURATION_PART.findall(text) if isinstance(text, str) and _DURATION.fullmatch(text) else []
    if not parts:
        raise ValueError(f"bad duration {text!r}")
    if any(not unit for _, unit in parts) and (bare is None or len(parts) > 1):
        raise ValueError(f"bad duration {text!r}: a number needs a unit")
    seconds: float = 0  # stays an int when every unit is whole seconds
    for n, unit in parts:
        name = unit or bare  # None only with bare None, refused above
        if name is None or name not in units:
            raise ValueError(f"bad duration {text!r}: the units are {', '.join(units)}")
        seconds += int(n) * DURATION_UNITS_S[name]
    return seconds
