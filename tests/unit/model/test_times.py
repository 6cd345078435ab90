"""model/times.py: provider time formats (from tests/test_model.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from sms_analytics.model.times import (
    CHINA,
    BadTime,
    ms_to_datetime,
    parse_china_datetime,
    parse_compact,
    parse_duration,
    parse_epoch_seconds,
    parse_instant,
)


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_china_datetime() -> None:
    assert parse_china_datetime("2017-01-01 00:00:00") == utc_ms(2016, 12, 31, 16, 0, 0) == 1_483_200_000_000
    assert parse_china_datetime(" 2015-10-17 08:03:04 ") == utc_ms(2015, 10, 17, 0, 3, 4)
    assert ms_to_datetime(1_483_200_000_000) == datetime(2016, 12, 31, 16, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2017/01/01 00:00:00", "2017-01-01T00:00:00", "2017-01-01", "", "yesterday",
                                   "2017-02-30 00:00:00", 1483200000, None, True])
def test_china_datetime_rejects_other_shapes(value: object) -> None:
    with pytest.raises(BadTime):
        parse_china_datetime(value)


def test_compact_kx_time() -> None:
    assert parse_compact("20161012150400") == utc_ms(2016, 10, 12, 7, 4, 0)
    assert parse_compact("20170101000000") == 1_483_200_000_000


@pytest.mark.parametrize("value", ["2016101215040", "201610121504000", "20161312150400", "2016-10-12 15:04", "abcdefghijklmn",
                                   20161012150400, None])
def test_compact_rejects_other_shapes(value: object) -> None:
    with pytest.raises(BadTime):
        parse_compact(value)


def test_epoch_seconds() -> None:
    assert parse_epoch_seconds(1457336869) == 1_457_336_869_000
    assert parse_epoch_seconds(1457336869.25) == 1_457_336_869_250
    assert parse_instant(1457336869) == 1_457_336_869_000


@pytest.mark.parametrize("value", [
    "2017-01-01T00:00:00+08:00", "2016-12-31T16:00:00Z", "2016-12-31T16:00:00+00:00", "2016-12-31T11:00:00-05:00",
    " 2016-12-31T16:00:00.000Z ",
])
def test_iso_with_offset(value: str) -> None:
    assert parse_instant(value) == 1_483_200_000_000


def test_iso_keeps_milliseconds() -> None:
    assert parse_instant("2016-12-31T16:00:00.250Z") == 1_483_200_000_250


@pytest.mark.parametrize("value", ["2017-01-01T00:00:00", "2017-01-01 00:00:00", "2017-01-01"])
def test_iso_without_offset_is_rejected(value: str) -> None:
    with pytest.raises(BadTime, match="no UTC offset"):
        parse_instant(value)


@pytest.mark.parametrize("value", ["not a time", "Z", "", "2017-13-01T00:00:00Z", None, [], {}])
def test_instant_rejects_garbage(value: object) -> None:
    with pytest.raises(BadTime):
        parse_instant(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(value: float) -> None:
    with pytest.raises(BadTime, match="finite"):
        parse_epoch_seconds(value)
    with pytest.raises(BadTime):
        parse_instant(value)


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_time(value: bool) -> None:
    with pytest.raises(BadTime):
        parse_epoch_seconds(value)
    with pytest.raises(BadTime):
        parse_instant(value)


@pytest.mark.parametrize("value", [1e308, 1.7976931348623157e308])
def test_huge_finite_epoch_is_bad_time(value: float) -> None:
    with pytest.raises(BadTime):
        parse_epoch_seconds(value)


def test_times_before_2000_are_rejected() -> None:
    with pytest.raises(BadTime, match="window"):
        parse_china_datetime("1999-12-31 23:59:59")
    with pytest.raises(BadTime, match="window"):
        parse_compact("19991231235959")
    with pytest.raises(BadTime, match="window"):
        parse_epoch_seconds(946_684_799)
    with pytest.raises(BadTime, match="window"):
        parse_instant("1999-12-31T23:59:59Z")
    with pytest.raises(BadTime, match="window"):
        parse_epoch_seconds(0)
    with pytest.raises(BadTime, match="window"):
        parse_epoch_seconds(-1)
    # 2000-01-01T00:00:00Z itself is inside the window; China midnight is 8 h earlier.
    assert parse_epoch_seconds(946_684_800) == 946_684_800_000
    assert parse_instant("2000-01-01T00:00:00Z") == 946_684_800_000
    with pytest.raises(BadTime):
        parse_china_datetime("2000-01-01 00:00:00")
    assert parse_china_datetime("2000-01-01 08:00:00") == 946_684_800_000


def test_times_more_than_a_day_ahead_are_rejected() -> None:
    soon = datetime.now(CHINA) + timedelta(hours=20)
    later = datetime.now(CHINA) + timedelta(days=1, hours=1)
    assert parse_china_datetime(soon.strftime("%Y-%m-%d %H:%M:%S")) == int(soon.replace(microsecond=0).timestamp() * 1000)
    assert parse_compact(soon.strftime("%Y%m%d%H%M%S")) == int(soon.replace(microsecond=0).timestamp() * 1000)
    with pytest.raises(BadTime, match="window"):
        parse_china_datetime(later.strftime("%Y-%m-%d %H:%M:%S"))
    with pytest.raises(BadTime, match="window"):
        parse_compact(later.strftime("%Y%m%d%H%M%S"))
    with pytest.raises(BadTime, match="window"):
        parse_epoch_seconds(later.timestamp())
    with pytest.raises(BadTime, match="window"):
        parse_instant(later.isoformat())
    with pytest.raises(BadTime, match="window"):
        parse_instant("9999-12-31T23:59:59Z")


@pytest.mark.parametrize("text,seconds", [("90m", 5400), ("1h30m", 5400), (" 2w", 1209600), ("500ms", 0.5),
                                          ("1y", 31_536_000), ("5 m", 300)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_units_and_bare_numbers() -> None:
    assert parse_duration("60", bare="s") == 60
    with pytest.raises(ValueError):
        parse_duration("60")  # a number needs a unit unless `bare` names one
    with pytest.raises(ValueError):
        parse_duration("3y", units=("s", "m", "h", "d", "w"))
    with pytest.raises(ValueError):
        parse_duration("1h30", bare="s")  # a bare number only on its own


@pytest.mark.parametrize("text", ["", "  ", "h", "-1h", "1.5h", "1 minute", "1" * 40 + "x"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
