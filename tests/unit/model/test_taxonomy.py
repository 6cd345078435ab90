"""model/taxonomy.py: failure categories (from tests/test_model.py)."""

from __future__ import annotations

import pytest

from sms_analytics.model.taxonomy import CATEGORIES, categorize


def classify(delivered: bool, code: str, message: str) -> str:
    """The receipt-stage categorization the join falls back to: delivered flag first, then the text."""
    return "delivered" if delivered else categorize(message, code, "receipt")


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
