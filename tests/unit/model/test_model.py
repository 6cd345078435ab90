"""Pure unit tests of the model: phone numbers, provider times, failure classification."""

from __future__ import annotations

import hashlib
import hmac
import math
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_analytics.model.taxonomy import CATEGORIES, categorize


def classify(delivered: bool, code: str, message: str) -> str:
    """The receipt-stage categorization the join falls back to: delivered flag first, then the text."""
    return "delivered" if delivered else categorize(message, code, "receipt")
from sms_analytics.model.phone import BadPhone, PhoneHasher, load_or_create_key, mask, normalize
from sms_analytics.model.times import (
    CHINA, BadTime, ms_to_datetime, parse_china_datetime, parse_compact, parse_duration, parse_epoch_seconds,
    parse_instant,
)


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


# --- phone: normalization ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "13812341234",  # 11-digit national
    "+8613812341234",
    "008613812341234",
    "8613812341234",  # 86-prefixed, 13 digits, no '+'
    " 138 1234 1234 ",
    "+86-138-1234-1234",
    13812341234,  # a JSON number
])
def test_cn_forms_normalize_to_the_same_e164(raw: object) -> None:
    phone = normalize(raw)
    assert phone.e164 == "+8613812341234"
    assert phone.country_code == "86"
    assert phone.national == "13812341234"


@pytest.mark.parametrize("mobile, nationcode", [("13812341234", "86"), ("13812341234", "+86"), ("13812341234", 86)])
def test_tencent_national_number_plus_nationcode(mobile: str, nationcode: object) -> None:
    phone = normalize(mobile, nationcode)  # type: ignore[arg-type]
    assert (phone.e164, phone.country_code, phone.national) == ("+8613812341234", "86", "13812341234")


def test_tencent_nationcode_for_another_country() -> None:
    phone = normalize("91234567", "852")
    assert (phone.e164, phone.country_code, phone.national) == ("+85291234567", "852", "91234567")
    assert phone.carrier == "unknown"


def test_alibaba_international_form_without_plus() -> None:
    phone = normalize("85291234567")
    assert (phone.e164, phone.country_code, phone.national) == ("+85291234567", "852", "91234567")
    assert phone.carrier == "unknown"
    assert phone.masked == "912*4567"


def test_full_international_number_keeps_its_country() -> None:
    phone = normalize("+14155552671")
    assert (phone.e164, phone.country_code, phone.national) == ("+14155552671", "1", "4155552671")
    assert phone.carrier == "unknown"


@pytest.mark.parametrize("raw, e164", [("+2250712345678", "+2250712345678"), ("+390612345678", "+390612345678")])
def test_leading_zero_of_national_number_is_kept(raw: str, e164: str) -> None:
    assert normalize(raw).e164 == e164


def test_full_width_digits_are_not_misread_as_another_country() -> None:
    try:
        phone = normalize("１３８１２３４１２３４")
    except BadPhone:
        return
    assert phone.e164 == "+8613812341234"


@pytest.mark.parametrize("raw", [
    "abc", "1381234abcd", "+86138x2341234", "", "   ", "+", "123456789012345678901",  # too long
    "+861381234123412341234", "12", "+8612", None, 13.8, True, [], {"phone": "13812341234"}, b"13812341234",
])
def test_garbage_is_bad_phone(raw: object) -> None:
    with pytest.raises(BadPhone):
        normalize(raw)


def test_non_numeric_nationcode_is_bad_phone() -> None:
    with pytest.raises(BadPhone, match="nationcode"):
        normalize("13812341234", "CN")


def test_bad_phone_is_a_value_error() -> None:
    assert issubclass(BadPhone, ValueError)


# --- phone: carrier ---------------------------------------------------------------------------------

@pytest.mark.parametrize("national, carrier", [
    ("13812341234", "mobile"), ("13912341234", "mobile"), ("15012341234", "mobile"), ("19812341234", "mobile"),
    ("14401234567", "mobile"), ("17031234567", "mobile"), ("17051234567", "mobile"),
    ("13012341234", "unicom"), ("18612341234", "unicom"), ("16612341234", "unicom"),
    ("17041234567", "unicom"), ("17091234567", "unicom"),
    ("13312341234", "telecom"), ("18912341234", "telecom"), ("19912341234", "telecom"),
    ("13491234567", "telecom"),  # 1349 overrides mobile's 134
    ("17001234567", "telecom"), ("17021234567", "telecom"),
    ("13481234567", "mobile"),  # 134 without the 1349 override
    ("19212341234", "broadnet"),
    ("17112341234", "unicom"), ("17312341234", "telecom"),
    ("12012341234", "unknown"),  # no such segment
])
def test_carrier_by_segment(national: str, carrier: str) -> None:
    assert normalize(national).carrier == carrier
    assert normalize("+86" + national).carrier == carrier


@pytest.mark.parametrize("raw", ["+85291234567", "+14155552671", "+447911123456", "+85213912345"])
def test_non_cn_numbers_have_unknown_carrier(raw: str) -> None:
    assert normalize(raw).carrier == "unknown"


# --- phone: mask and hash ---------------------------------------------------------------------------

def test_mask_of_cn_number() -> None:
    assert normalize("+8613812341234").masked == "138****1234"
    assert mask("13812341234") == "138****1234"


@pytest.mark.parametrize("national, masked", [
    ("4155552671", "415***2671"), ("91234567", "912*4567"), ("1234567", "1****67"), ("12345", "1**45"), ("123", "1*23"),
])
def test_mask_of_other_lengths(national: str, masked: str) -> None:
    assert mask(national) == masked


def test_hash_is_hmac_sha256_of_e164() -> None:
    key = b"k" * 32
    hasher = PhoneHasher(key)
    e164 = normalize("13812341234").e164
    expected = hmac.new(key, b"+8613812341234", hashlib.sha256).hexdigest()
    assert hasher(e164) == expected
    assert len(expected) == 64
    assert hasher("+8613812341235") != expected
    assert PhoneHasher(b"j" * 32)(e164) != expected


def test_hasher_refuses_a_short_key() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        PhoneHasher(b"short")


def test_load_or_create_key_creates_once_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_or_create_key(None, data_dir)
    path = data_dir / "phone_hash.key"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and bytes.fromhex(first.decode())  # 32 random bytes, hex
    assert path.read_bytes().strip() == first
    second = load_or_create_key(None, data_dir)
    assert second == first
    assert load_or_create_key("", data_dir) == first  # an empty setting is not a key
    assert sorted(p.name for p in data_dir.iterdir()) == ["phone_hash.key"]  # no temp file left
    assert load_or_create_key(None, tmp_path / "other") != first


def test_load_or_create_key_returns_the_configured_key(tmp_path: Path) -> None:
    assert load_or_create_key("configured-key-0123456789", tmp_path) == b"configured-key-0123456789"
    assert not (tmp_path / "phone_hash.key").exists()


# --- times ------------------------------------------------------------------------------------------

def test_china_datetime() -> None:
    assert parse_china_datetime("2017-01-01 00:00:00") == utc_ms(2016, 12, 31, 16, 0, 0) == 1_483_200_000_000
    assert parse_china_datetime(" 2015-10-17 08:03:04 ") == utc_ms(2015, 10, 17, 0, 3, 4)
    assert ms_to_datetime(1_483_200_000_000) == datetime(2016, 12, 31, 16, tzinfo=timezone.utc)


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


# --- failure classification -------------------------------------------------------------------------

@pytest.mark.parametrize("delivered, code, message, category", [
    (True, "DELIVRD", "成功", "delivered"),
    (True, "UNDELIV", "空号", "delivered"),  # the delivered flag decides
    (False, "MK:0001", "空号", "invalid_number"),
    (False, "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号", "invalid_number"),
    (False, "", "号段错误,号段不存在", "invalid_number"),
    (False, "MK:0005", "用户关机", "unreachable"),
    (False, "", "停机", "unreachable"),
    (False, "F1120", "一级黑名单", "blacklisted"),
    (False, "REJECTD", "客户接收失败", "content_blocked"),
    (False, "F123", "短信内容错误, 包含敏感词", "content_blocked"),
    (False, "F11300", "系统频控超过日限额", "rate_limited"),
    (False, "EXPIRED", "短信接收失败", "expired"),
    (False, "expired", "", "expired"),  # codes are matched case-insensitively
    (False, "", "终端异常", "terminal_error"),
    (False, "UNDELIV", "短信接收失败", "carrier_error"),
    (False, "", "网关拒绝", "carrier_error"),
    (False, "F100006", "用户余额不足", "account_error"),
    (False, "xyz", "something else", "unknown"),
    (False, "", "", "unknown"),
])
def test_classify_examples(delivered: bool, code: str, message: str, category: str) -> None:
    assert classify(delivered, code, message) == category
    assert category in CATEGORIES


@pytest.mark.parametrize("message, category", [
    ("停机、空号", "unreachable"),
    ("空号/停机/关机", "invalid_number"),
    ("一般为空号或停机", "invalid_number"),
    ("黑名单用户已停机", "blacklisted"),
    ("关机或空号", "unreachable"),
])
def test_first_named_cause_wins(message: str, category: str) -> None:
    assert classify(False, "", message) == category


def test_message_is_searched_before_the_code() -> None:
    assert classify(False, "MOBILE_NUMBER_ILLEGAL", "用户关机") == "unreachable"
    assert classify(False, "EXPIRED", "黑名单") == "blacklisted"
    assert classify(False, "EXPIRED", "no cause named") == "expired"


@given(st.binary(max_size=200))
def test_partitioner_matches_kafkas_murmur2(key: bytes) -> None:
    """The receivers' murmur2 gives the partitions of Kafka's default partitioner (aiokafka's copy)."""
    from aiokafka.partitioner import murmur2

    from sms_analytics.sources.producer import murmur2_fast, partition_of

    assert murmur2_fast(key) & 0x7FFFFFFF == murmur2(key) & 0x7FFFFFFF
    assert partition_of(key, 12) == (murmur2(key) & 0x7FFFFFFF) % 12


# --- deliveries records' headers ---------------------------------------------------------------------

_times = st.one_of(st.none(), st.integers(min_value=0, max_value=4_102_444_800_000))


@given(st.lists(st.tuples(_times, _times), min_size=1, max_size=30))
def test_delivery_headers_say_what_a_scan_of_the_json_finds(times: list[tuple[int | None, int | None]]) -> None:
    """The sink takes a deliveries record's row count and rollup minutes from its headers instead
    of scanning the JSON: the headers must say exactly what the scan (its fallback) finds."""
    from sms_analytics.model.events import Delivery, delivery_headers, encode_deliveries, read_delivery_headers
    from sms_analytics.sinks.writer import _MINUTE_FIELDS, _ROW_KEY

    deliveries = [Delivery(provider="aliyun", message_id=f"m{i}", phone="", phone_hash=f"h{i}", phone_masked="138****0000",
                           carrier="mobile", country_code="86", sent_at_ms=sent, receipt_sent_at_ms=receipt)
                  for i, (sent, receipt) in enumerate(times)]
    raw = encode_deliveries(deliveries)
    rows, minutes = read_delivery_headers(delivery_headers(deliveries))
    assert rows == raw.count(_ROW_KEY) == len(deliveries)
    assert set(minutes) == {int(ms) // 60_000 for ms in _MINUTE_FIELDS.findall(raw)}
    assert read_delivery_headers([]) is None


@pytest.mark.parametrize(("host", "local"), [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.com", False), ("", False),
])
def test_is_loopback(host: str, local: bool) -> None:
    from sms_analytics.model.addresses import is_loopback

    assert is_loopback(host) is local


# --- durations: the one parser of --since, $__timeGroup and rule group intervals -----------------------

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


# --- the provider facts and the message key, each written once ------------------------------------------

def test_segments_rule() -> None:
    from sms_analytics.model.providers import GSM_SEGMENT_CHARS, segments

    assert [segments("x" * n) for n in (0, 1, 70, 71, 134, 135)] == [1, 1, 1, 2, 2, 3]
    assert [segments("x" * n, *GSM_SEGMENT_CHARS) for n in (160, 161, 306, 307)] == [1, 2, 2, 3]


def test_message_key() -> None:
    from sms_analytics.model.topics import message_key, message_key_text

    assert message_key_text("kx", "m1", "+8613800000000") == "kx|m1|+8613800000000"
    assert message_key("kx", "m1", "+8613800000000") == b"kx|m1|+8613800000000"
