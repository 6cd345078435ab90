"""Province and city from the number segment (model/region.py), on phonenumbers' own data."""

from __future__ import annotations

import pytest

from sms_analytics.model.phone import normalize
from sms_analytics.model.region import (
    UNKNOWN,
    Region,
    parse_description,
    region_of,
    region_of_national,
    region_of_segment,
)


@pytest.mark.parametrize(
    "national, expected",
    [
        ("13800200000", Region("广东", "广州")),  # 1380020: a Guangzhou 138 segment
        ("13802551234", Region("广东", "深圳")),  # 1380255: a Shenzhen 138 segment
        ("13800138000", Region("北京", "北京")),  # a municipality: the city is the municipality
        ("13505710000", Region("浙江", "杭州")),  # the Alibaba document's sample number
        ("13900000001", Region("新疆", "乌鲁木齐")),  # an autonomous region, written short by the data
    ],
)
def test_known_segments(national: str, expected: Region) -> None:
    assert region_of_national(national) == expected
    assert region_of(normalize(national)) == expected
    assert region_of(normalize("+86" + national)) == expected


@pytest.mark.parametrize(
    "description, expected",
    [
        ("广东省深圳市", Region("广东", "深圳")),
        ("吉林省吉林市", Region("吉林", "吉林")),
        ("北京市", Region("北京", "北京")),
        ("天津", Region("天津", "天津")),
        ("广西南宁市", Region("广西", "南宁")),
        ("广西壮族自治区南宁市", Region("广西", "南宁")),  # the long form, should the data adopt it
        ("内蒙古兴安盟", Region("内蒙古", "兴安盟")),
        ("新疆喀什地区", Region("新疆", "喀什地区")),
        ("云南省大理白族自治州", Region("云南", "大理白族自治州")),
        ("陕西省西安市", Region("陕西", "西安")),
        ("山西省太原市", Region("山西", "太原")),
        ("黑龙江省哈尔滨市", Region("黑龙江", "哈尔滨")),
        ("中国", UNKNOWN),  # the data's fallback for a segment it does not know
        ("香港", UNKNOWN),
        ("美国", UNKNOWN),
        ("", UNKNOWN),
    ],
)
def test_parse_description(description: str, expected: Region) -> None:
    assert parse_description(description) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "+12025550123",  # United States
        "+85291234567",  # Hong Kong mobile
        "+447911123456",  # United Kingdom
        "+8675512345678",  # a Shenzhen landline (11 national digits too) is not a mobile segment
    ],
)
def test_not_a_mainland_mobile_is_unknown(raw: str) -> None:
    assert region_of(normalize(raw)) == UNKNOWN


@pytest.mark.parametrize("national", ["", "1380013800", "138001380000", "23800138000", "1380a138000", "19912345678"])
def test_malformed_or_unknown_segment_is_empty(national: str) -> None:
    assert region_of_national(national) == UNKNOWN  # 199: a segment phonenumbers has no place for


def test_segment_is_cached() -> None:
    region_of_segment.cache_clear()
    region_of_national("13800200000")
    region_of_national("13800209999")  # same segment, another subscriber
    region_of_national("13802551234")
    info = region_of_segment.cache_info()
    assert (info.misses, info.hits, info.currsize) == (2, 1, 2)
