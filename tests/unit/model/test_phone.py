"""Phone numbers: normalization, hashing, masking and the hash key (from tests/test_model.py, whose other tests are now in the files of their modules)."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from sms_analytics.model.phone import BadPhone, PhoneHasher, load_or_create_key, mask, normalize

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


# --- failure classification -------------------------------------------------------------------------


# --- deliveries records' headers ---------------------------------------------------------------------


# --- durations: the one parser of --since, $__timeGroup and rule group intervals -----------------------


# --- the provider facts and the message key, each written once ------------------------------------------


