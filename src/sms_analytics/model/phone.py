"""Phone numbers: E.164 normalization, keyed hash, masked form, China carrier from the segment.

Raw numbers are personal data: the warehouse gets `phone_hash` (HMAC-SHA256 with the configured
key) and `phone_masked` (`138****1234`) only, and logs get neither.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

# China number segments (MIIT allocation). Longest prefix wins, so 4-digit entries override 3-digit.
_SEGMENTS: dict[str, tuple[str, ...]] = {
    "mobile": (
        "134", "135", "136", "137", "138", "139", "147", "148", "150", "151", "152", "157", "158",
        "159", "165", "172", "178", "182", "183", "184", "187", "188", "195", "197", "198", "1440",
        "1703", "1705", "1706",
    ),
    "unicom": (
        "130", "131", "132", "145", "146", "155", "156", "166", "167", "171", "175", "176", "185",
        "186", "196", "1704", "1707", "1708", "1709",
    ),
    "telecom": (
        "133", "1349", "149", "153", "162", "173", "174", "177", "180", "181", "189", "190", "191",
        "193", "199", "1700", "1701", "1702",
    ),
    "broadnet": ("192",),
}
_PREFIX_TO_CARRIER = {p: c for c, prefixes in _SEGMENTS.items() for p in prefixes}
CARRIERS = ("mobile", "unicom", "telecom", "broadnet", "unknown")


class BadPhone(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str  # +8613812341234
    country_code: str  # "86"
    national: str  # 13812341234

    @property
    def carrier(self) -> str:
        return carrier_of(self)

    @property
    def masked(self) -> str:
        return mask(self.national)


def carrier_of(phone: Phone) -> str:
    if phone.country_code != "86" or len(phone.national) != 11:
        return "unknown"
    return _PREFIX_TO_CARRIER.get(phone.national[:4]) or _PREFIX_TO_CARRIER.get(
        phone.national[:3], "unknown"
    )


def mask(national: str) -> str:
    """138****1234 for an 11-digit number; keep 3 leading and 4 trailing digits in general."""
    if len(national) <= 7:
        return national[:1] + "*" * max(len(national) - 3, 1) + national[-2:]
    return national[:3] + "*" * (len(national) - 7) + national[-4:]


def normalize(raw: object, nationcode: str | None = None) -> Phone:
    """Accepts 13812341234, +8613812341234, 008613812341234, 8613812341234 (13 digits),
    Alibaba's international form without '+' (85200000000), or a national number plus a
    separate nation code (Tencent callbacks)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise BadPhone(f"phone must be a string, got {type(raw).__name__}")
    text = unicodedata.normalize("NFKC", raw).strip().replace(" ", "").replace("-", "")  # full-width digits
    if not text or len(text) > 20:
        raise BadPhone("phone is empty or too long")
    if nationcode and not text.startswith("+"):
        code = str(nationcode).strip().lstrip("+")
        if not code.isdigit():
            raise BadPhone("nationcode is not numeric")
        text = f"+{code}{text}"
    elif text.startswith("00"):
        text = "+" + text[2:]
    elif not text.startswith("+"):
        text = ("+86" if len(text) == 11 and text.startswith("1") else "+") + text
    if not (text[1:].isascii() and text[1:].isdigit()):
        raise BadPhone("phone has characters other than digits")
    if len(text) == 14 and text.startswith("+861"):  # a mainland mobile: what libphonenumber would say, 10x sooner
        return Phone(e164=text, country_code="86", national=text[3:])
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise BadPhone(f"phone is not a number: {exc.args[0] if exc.args else exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise BadPhone("phone is not a possible number for its country")
    national = phonenumbers.national_significant_number(parsed)  # keeps a leading zero (Italy, Côte d'Ivoire)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return Phone(e164=e164, country_code=str(parsed.country_code), national=national)


class PhoneHasher:
    """HMAC-SHA256 of the E.164 number with a secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("SMS_PHONE_HASH_KEY must be at least 16 bytes")
        self._key = key

    def __call__(self, e164: str) -> str:
        return hmac.new(self._key, e164.encode(), hashlib.sha256).hexdigest()


def load_or_create_key(configured: str | None, data_dir: Path, *, create: bool = True) -> bytes:
    """The configured key, or one generated once and kept in the data dir (mode 0600)."""
    if configured:
        return configured.encode()
    path = data_dir / "phone_hash.key"
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise FileNotFoundError(f"no SMS_PHONE_HASH_KEY and no {path}: nothing was hashed with a key here yet")
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(key)
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)  # atomic and never overwrites a key another process wrote first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()
