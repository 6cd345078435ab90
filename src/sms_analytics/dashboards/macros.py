"""Expand a dashboard query the way Grafana + grafana-clickhouse-datasource 4.20 do, so tests can run
panel SQL on the warehouse (see ../shared/notes/grafana-clickhouse-plugin.md).

Order, as in the plugin: the frontend applies `$__conditionalAll(cond, $var)` and then interpolates
template variables (`$var`, `${var}`, `${var:singlequote}`, `${var:csv}`); the backend then blanks
comments and expands the `$__` macros (longest name first, a name ends at a non-word character,
arguments split on top-level commas and trimmed, unknown macros left as they are, macros nest).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from sms_analytics.model.times import parse_duration

ALL = "$__all"
_ALL_NAMES = {ALL, "All", "all"}

_COMMENT = re.compile(r"'(?:[^'\\]|\\.)*'|--[^\n]*|/\*.*?\*/", re.S)
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_MACRO = re.compile(r"\$__([A-Za-z0-9_]+)")


def blank_comments(sql: str) -> str:
    """`-- …` and `/* … */` outside string literals become one space."""
    return _COMMENT.sub(lambda m: m.group(0) if m.group(0).startswith("'") else " ", sql)


def _is_all(value: list[str] | str | None) -> bool:
    if value is None or value == "" or value == []:
        return True
    if isinstance(value, str):
        return value in _ALL_NAMES
    return any(v in _ALL_NAMES for v in value)


def _values(name: str, variables: dict[str, list[str] | str], all_values: dict[str, list[str]]) -> list[str] | str:
    value = variables[name]
    if (isinstance(value, str) and value in _ALL_NAMES) or (isinstance(value, list) and any(v in _ALL_NAMES for v in value)):
        return list(all_values.get(name, []))
    return value


def _format(value: list[str] | str, fmt: str | None) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "raw":
        return ",".join(values) if not isinstance(value, str) else value
    if fmt is not None:
        raise ValueError(f"unsupported variable format :{fmt}")
    if isinstance(value, str):
        return value  # a single value: raw, unquoted
    if len(values) == 1:
        return values[0]
    return ",".join(f"'{v}'" for v in values)  # a multi-value without a format: quoted, not escaped


def _outside_literals(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, bracket depth after it) for every character outside string literals."""
    depth, i, quote = 0, start, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
        else:
            depth += (c == "(") - (c == ")")
            yield i, c, depth
        i += 1


def _close_paren(sql: str, open_at: int) -> int:
    """Index of the `)` matching the `(` at open_at, skipping string literals; -1 if none."""
    return next((i for i, c, depth in _outside_literals(sql, open_at) if c == ")" and depth == 0), -1)


def _split_args(text: str) -> list[str]:
    """Arguments split on top-level commas (not inside brackets or literals), trimmed."""
    args, start = [], 0
    for i, c, depth in _outside_literals(text):
        if c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return args


def conditional_all(sql: str, variables: dict[str, list[str] | str]) -> str:
    """`$__conditionalAll(cond, $var)`: `1=1` when the variable is All or empty, else `cond`."""
    macro = "$__conditionalAll"
    while True:
        at = sql.rfind(macro + "(")
        if at < 0:
            return sql
        open_at = at + len(macro)
        close = _close_paren(sql, open_at)
        if close < 0:
            return sql
        args = _split_args(sql[open_at + 1:close])
        if len(args) != 2:
            raise ValueError(f"$__conditionalAll takes 2 arguments, got {args!r}")
        m = re.fullmatch(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", args[1])
        name = (m.group(1) or m.group(2)) if m else args[1]
        phrase = "1=1" if _is_all(variables.get(name)) else args[0]
        sql = sql[:at] + phrase + sql[close + 1:]


def interpolate(sql: str, variables: dict[str, list[str] | str], all_values: dict[str, list[str]]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name.startswith("__") or name not in variables:
            return m.group(0)
        return _format(_values(name, variables, all_values), m.group(2))
    return _VAR.sub(sub, sql)


def _seconds(duration: str) -> int:
    try:
        seconds = parse_duration(duration, units=("ms", "s", "m", "h", "d", "w"), bare="s")
    except ValueError:
        raise ValueError(f"bad interval {duration!r}") from None
    return max(1, int(seconds)) if seconds else 0


def backend_macros(sql: str, *, start: datetime, end: datetime, interval_s: int) -> str:
    f, t = int(start.timestamp()), int(end.timestamp())
    fms, tms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    i = max(1, int(interval_s))
    fd = start.astimezone(UTC).strftime("%Y-%m-%d")
    td = end.astimezone(UTC).strftime("%Y-%m-%d")

    def date_time_filter(a: list[str]) -> str:
        return (f"({a[0]} >= toDate('{fd}') AND {a[0]} <= toDate('{td}')) AND "
                f"({a[1]} >= toDateTime({f}) AND {a[1]} <= toDateTime({t}))")

    with_args: dict[str, tuple[int, Callable[[list[str]], str]]] = {
        "timeFilter": (1, lambda a: f"{a[0]} >= toDateTime({f}) AND {a[0]} <= toDateTime({t})"),
        "timeFilter_ms": (1, lambda a: f"{a[0]} >= fromUnixTimestamp64Milli({fms}) AND {a[0]} <= fromUnixTimestamp64Milli({tms})"),
        "dateFilter": (1, lambda a: f"{a[0]} >= toDate('{fd}') AND {a[0]} <= toDate('{td}')"),
        "dateTimeFilter": (2, date_time_filter),
        "dt": (2, date_time_filter),
        "timeInterval": (1, lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {i} second)"),
        "timeInterval_ms": (1, lambda a: f"toStartOfInterval(toDateTime64({a[0]}, 3), INTERVAL {i * 1000} millisecond)"),
        "timeFrom": (1, lambda a: f"{a[0]} >= toDateTime({f})"),
        "timeTo": (1, lambda a: f"{a[0]} <= toDateTime({t})"),
        "timeGroup": (2, lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {_seconds(a[1])} second)"),
    }
    plain = {
        "fromTime": f"toDateTime({f})", "toTime": f"toDateTime({t})",
        "fromTime_ms": f"fromUnixTimestamp64Milli({fms})", "toTime_ms": f"fromUnixTimestamp64Milli({tms})",
        "interval_s": str(i),
    }

    def expand(text: str) -> str:
        out, pos = [], 0
        for m in _MACRO.finditer(text):
            if m.start() < pos:
                continue
            name = m.group(1)
            out.append(text[pos:m.start()])
            pos = m.end()
            if name in with_args and m.end() < len(text) and text[m.end()] == "(":
                close = _close_paren(text, m.end())
                if close < 0:
                    raise ValueError(f"unclosed $__{name}(")
                args = [expand(a) for a in _split_args(text[m.end() + 1:close])]  # macros nest
                need, render = with_args[name]
                if len(args) != need:
                    raise ValueError(f"$__{name} takes {need} argument(s), got {args!r}")
                out.append(render(args))
                pos = close + 1
            elif name in plain:
                out.append(plain[name])
            else:
                out.append(m.group(0))  # unknown: left as it is
        out.append(text[pos:])
        return "".join(out)

    return expand(blank_comments(sql))


def expand(sql: str, *, start: datetime, end: datetime, interval_s: int,
           variables: dict[str, list[str] | str], all_values: dict[str, list[str]]) -> str:
    """The SQL the ClickHouse server receives for a panel query."""
    sql = conditional_all(sql, variables)
    sql = interpolate(sql, variables, all_values)
    return backend_macros(sql, start=start, end=end, interval_s=interval_s)
