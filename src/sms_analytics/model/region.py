"""Province and city of a mainland mobile number from its segment (号段归属地).

The source is libphonenumber's offline Chinese geocoding data as phonenumbers ships it
(`phonenumbers.geocoder.description_for_number(n, "zh")`): one description per 7-digit segment
(the first 7 digits of the 11-digit number, 138 0013 for 13800138000), some per 6 digits. The
description is the province and the prefecture as the library writes them: 广东省深圳市, 北京市,
天津 (sic), 广西南宁市, 新疆喀什地区, 云南省大理白族自治州. A segment the data does not know (all of
166, 19x and most of 17x in phonenumbers 9.0) gets the country name 中国 instead: unknown here.

Normalized names (what the warehouse stores and dashboards show):

- province: the short name, without 省 / 市 / 自治区 (广东, 北京, 广西, 内蒙古, 新疆). The library
  already writes the autonomous regions short (广西南宁市, not 广西壮族自治区南宁市); their long forms
  are accepted too, so a data update that spells them out changes nothing here.
- city: the prefecture without a trailing 市 (深圳, 吉林), kept whole when it is not a 市
  (喀什地区, 兴安盟, 大理白族自治州, 神农架林区), since 大理 alone is not the name of a prefecture.
  For the four municipalities the city is the municipality (北京 / 北京).
- not a mainland mobile number (another country, a landline, malformed), or a segment the data
  does not know: both empty strings (`UNKNOWN`). A panel or a column that wants a word maps ""
  to it ("unknown", as `carrier` says).

Names are those of the data's vintage: it still has 襄樊 (now 襄阳), 巢湖 (merged into 合肥 and
others in 2011), 毕节地区 / 铜仁地区 (now 市). They are kept as given: a rename in a later
phonenumbers is a new value, and a region's series splits at the upgrade.

Speed (it runs per message in the stream): the description is looked up once per 7-digit segment
and kept (`functools.cache`, unbounded: at most 10^6 keys, the segments 1xxxxxx; names are
interned, so an entry is its key and a tuple: ~110 B, ~14 MB for the ~130,000 segments the data
places, 108 MB measured with all 10^6 seen). Only an 11-digit number starting with 1 reaches the
cache, so with normalized numbers (digits only) the bound holds. Measured on this machine (phonenumbers 9.0.43, CPython 3.11, 2 shared CPUs):

- `region_of_national("13800138000")`, cached segment: 0.13-0.28 µs per call (over 6 runs; the
  spread is the other load on the CPUs); `region_of(Phone)`: 0.15-0.28 µs;
- a segment's first lookup: 9-32 µs (builds a PhoneNumber, walks the prefix data, parses the name);
- the very first lookup in a process imports `phonenumbers.geocoder`, which loads the geocoding
  data of all countries: 0.2-0.5 s and ~100 MB of RSS, once. Importing this module does not (the
  CLI and every process that only imports model/ stay light); a worker calls `warm()` at start-up
  so that the first message does not pay it.

(`.venv/bin/python -m sms_analytics.model.region` prints these figures for the machine it runs on.)
"""

from __future__ import annotations

import sys
import time
from functools import cache
from typing import NamedTuple

import phonenumbers

from sms_analytics.model.phone import Phone


class Region(NamedTuple):
    province: str  # 广东; "" if unknown
    city: str  # 深圳; "" if unknown


UNKNOWN = Region("", "")

MUNICIPALITIES = ("北京", "天津", "上海", "重庆")
AUTONOMOUS_REGIONS = {  # short name -> the long forms a description may use
    "内蒙古": ("内蒙古自治区",),
    "广西": ("广西壮族自治区",),
    "西藏": ("西藏自治区",),
    "宁夏": ("宁夏回族自治区",),
    "新疆": ("新疆维吾尔自治区",),
}
PROVINCES = (  # the 31 provincial-level divisions of the mainland, short names
    *MUNICIPALITIES,
    "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建", "江西", "山东", "河南",
    "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海",
    *AUTONOMOUS_REGIONS,
)
# Each prefix a description can start with, longest first, to its province (广西壮族自治区 before 广西).
_PREFIXES: tuple[tuple[str, str], ...] = tuple(
    sorted(
        [(f"{p}省", p) for p in PROVINCES if p not in MUNICIPALITIES and p not in AUTONOMOUS_REGIONS]
        + [(f"{p}市", p) for p in MUNICIPALITIES]
        + [(long, p) for p, longs in AUTONOMOUS_REGIONS.items() for long in longs]
        + [(p, p) for p in PROVINCES],
        key=lambda item: -len(item[0]),
    )
)


def parse_description(description: str) -> Region:
    """广东省深圳市 -> (广东, 深圳); 北京市 -> (北京, 北京); 新疆喀什地区 -> (新疆, 喀什地区);
    anything that does not start with a mainland province (中国, 香港, "") -> UNKNOWN."""
    text = description.strip()
    found = next(((prefix, province) for prefix, province in _PREFIXES if text.startswith(prefix)), None)
    if found is None:
        return UNKNOWN
    prefix, province = found
    rest = text[len(prefix):]
    if province in MUNICIPALITIES:
        return Region(province, province)  # 北京市 (nothing after) or a district: the city is the municipality
    city = rest[:-1] if rest.endswith("市") and len(rest) > 1 else rest
    return Region(province, city)


@cache
def region_of_segment(segment: str) -> Region:
    """The region of a 7-digit mainland mobile segment (1380013), cached per segment."""
    if len(segment) != 7 or not segment.isdigit() or segment[0] != "1":
        return UNKNOWN
    # Any number of the segment stands for it: the data's keys are at most 7 national digits, and
    # the validity of a mainland mobile number depends on its first 7 digits only.
    from phonenumbers import geocoder  # here, not at the top: importing it loads ~100 MB of data

    number = phonenumbers.PhoneNumber(country_code=86, national_number=int(segment + "0000"))
    province, city = parse_description(geocoder.description_for_number(number, "zh", region="CN"))
    return Region(sys.intern(province), sys.intern(city)) if province else UNKNOWN


def region_of_national(national: str) -> Region:
    """The region of an 11-digit mainland mobile number (national form, 13800138000)."""
    if len(national) != 11 or national[0] != "1":
        return UNKNOWN
    return region_of_segment(national[:7])


def region_of(phone: Phone) -> Region:
    """The region of a normalized phone (sms_analytics.model.phone.normalize); UNKNOWN if it is not
    a mainland mobile number."""
    if phone.country_code != "86":
        return UNKNOWN
    return region_of_national(phone.national)


def warm() -> None:
    """Loads the geocoding data now (~0.5 s, once per process) rather than on the first message."""
    region_of_segment("1380013")


def _bench(calls: int = 1_000_000) -> dict[str, float]:
    """Seconds per call: cold import, a new segment, a cached segment, and region_of."""
    started = time.perf_counter()
    warm()
    cold = time.perf_counter() - started
    segments = [f"139{i:04d}" for i in range(2000)]
    started = time.perf_counter()
    for segment in segments:
        region_of_segment(segment)
    first = (time.perf_counter() - started) / len(segments)
    national = "13800138000"
    started = time.perf_counter()
    for _ in range(calls):
        region_of_national(national)
    cached = (time.perf_counter() - started) / calls
    phone = Phone(e164="+86" + national, country_code="86", national=national)
    started = time.perf_counter()
    for _ in range(calls):
        region_of(phone)
    via_phone = (time.perf_counter() - started) / calls
    return {"cold_s": cold, "first_lookup_s": first, "cached_s": cached, "region_of_s": via_phone}


if __name__ == "__main__":
    for name, seconds in _bench().items():
        print(f"{name:16} {seconds * 1e6:12.3f} µs")
