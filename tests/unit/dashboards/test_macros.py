"""dashboards/macros.py: the Grafana macros expanded as Grafana does (split from test_dashboards.py)."""

from __future__ import annotations

from tests.unit.dashboards.test_build import T0, T1, x


def test_time_macros() -> None:
    f, t = int(T0.timestamp()), int(T1.timestamp())
    assert x("$__timeFilter(minute)") == f"minute >= toDateTime({f}) AND minute <= toDateTime({t})"
    assert x("$__timeFilter_ms(at)") == (f"at >= fromUnixTimestamp64Milli({f}000) AND at <= fromUnixTimestamp64Milli({t}000)")
    assert x("$__fromTime/$__toTime/$__fromTime_ms") == f"toDateTime({f})/toDateTime({t})/fromUnixTimestamp64Milli({f}000)"
    assert x("$__timeInterval( minute )", interval_s=300) == "toStartOfInterval(toDateTime(minute), INTERVAL 300 second)"
    assert x("$__interval_s", interval_s=0) == "1"
    assert x("$__timeGroup(c, 5m)") == "toStartOfInterval(toDateTime(c), INTERVAL 300 second)"
    assert x("$__dateFilter(d)") == "d >= toDate('2024-03-01') AND d <= toDate('2024-03-01')"
    assert x("$__dt(d, t)") == (f"(d >= toDate('2024-03-01') AND d <= toDate('2024-03-01')) AND "
                                f"(t >= toDateTime({f}) AND t <= toDateTime({t}))")


def test_name_boundaries_unknown_and_nesting() -> None:
    f = int(T0.timestamp())
    assert x("$__fromTimeX $__unknown(a) $__toTime_msx") == "$__fromTimeX $__unknown(a) $__toTime_msx"
    assert x("$__timeInterval($__fromTime)", interval_s=60) == f"toStartOfInterval(toDateTime(toDateTime({f})), INTERVAL 60 second)"
    # arguments split on top-level commas only
    assert x("$__timeInterval(coalesce(a, b))", interval_s=60) == "toStartOfInterval(toDateTime(coalesce(a, b)), INTERVAL 60 second)"


def test_comments_are_blanked() -> None:
    out = x("SELECT 1 -- $__timeFilter(x)\n/* $__fromTime */ , '-- kept' AS s")
    assert "$__" not in out and "toDateTime" not in out and "'-- kept'" in out
    assert out.startswith("SELECT 1 ")


def test_variables_all_multi_single_and_quotes() -> None:
    options = {"provider": ["aliyun", "tencent", "o'brien"]}
    assert x("IN (${provider:singlequote})", {"provider": "All"}, options) == "IN ('aliyun','tencent','o\\'brien')"
    assert x("IN (${provider:singlequote})", {"provider": ["$__all"]}, options) == "IN ('aliyun','tencent','o\\'brien')"
    assert x("IN (${provider:singlequote})", {"provider": ["aliyun", "o'brien"]}, options) == "IN ('aliyun','o\\'brien')"
    assert x("${provider:csv}", {"provider": ["a", "b"]}) == "a,b"
    assert x("$provider", {"provider": ["a", "b"]}) == "'a','b'"
    assert x("$provider ${provider}x", {"provider": "a"}) == "a ax"
    assert x("$unknown ${other:csv}", {"provider": "a"}) == "$unknown ${other:csv}"


def test_conditional_all() -> None:
    sql = "WHERE $__conditionalAll(country_code IN (${country:singlequote}), $country) AND $__timeFilter(m)"
    assert x(sql, {"country": "All"}, {"country": ["86"]}).startswith("WHERE 1=1 AND m >= toDateTime(")
    assert x(sql, {"country": []}).startswith("WHERE 1=1 AND")
    assert x(sql, {"country": ["86", "852"]}).startswith("WHERE country_code IN ('86','852') AND m >=")
