"""The providers and carriers this project knows, and the billing-segment rule they share.

One place for each: the provider names (`PROVIDERS`, the `Provider` type), the carriers' English and
Chinese names (`CARRIER_NAMES`: English as in the warehouse's `carrier` column, Chinese as in the
provider documents), and the 70/67-character rule that every provider bills by (`segments`).
"""

from __future__ import annotations

from typing import Literal

Provider = Literal["aliyun", "tencent", "kx"]
PROVIDERS: tuple[Provider, ...] = ("aliyun", "tencent", "kx")

CARRIER_NAMES = {"mobile": "移动", "unicom": "联通", "telecom": "电信", "broadnet": "广电"}

SINGLE_SEGMENT_CHARS = 70  # a text up to this long is one billed message
SEGMENT_CHARS = 67  # a longer one is billed per this many characters (the rest carries the concatenation header)
GSM_SEGMENT_CHARS = (160, 153)  # the same for an all-ASCII text to a foreign number (Tencent)


def segments(text: str, single: int = SINGLE_SEGMENT_CHARS, part: int = SEGMENT_CHARS) -> int:
    """Billed messages for one text: up to `single` characters is 1; longer, every `part` characters is 1."""
    return 1 if len(text) <= single else -(-len(text) // part)
