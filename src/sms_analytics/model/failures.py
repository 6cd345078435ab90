"""Failure classification, first version: keyword rules over the provider's code and text.

The categories are the fixed taxonomy of the product. The cause named first in the text wins
(停机、空号 -> unreachable); at equal positions the earlier rule wins. The message text is
searched before the code, so a code only decides when the text names no cause.
The error-code knowledge base (a later issue) replaces the keyword rules with the seed tables.
"""

from __future__ import annotations

CATEGORIES = (
    "delivered", "invalid_number", "unreachable", "blacklisted", "content_blocked", "rate_limited",
    "expired", "terminal_error", "carrier_error", "account_error", "unknown",
)

_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("invalid_number", ("空号", "号码错误", "号码异常", "号段不存在", "号码不存在", "销号", "MOBILE_NUMBER_ILLEGAL", "INVALID")),
    ("unreachable", ("关机", "停机", "欠费", "不在服务区", "无法接通", "暂停服务")),
    ("blacklisted", ("黑名单", "免打扰", "BLACK")),
    ("content_blocked", ("关键字", "敏感词", "内容拦截", "签名", "模板", "KEYWORD", "REJECTD")),
    ("rate_limited", ("频控", "超频", "限额", "发送频率", "LIMIT")),
    ("expired", ("EXPIRED", "超时", "无状态报告", "等待状态报告")),
    ("terminal_error", ("终端", "内存", "信号")),
    ("carrier_error", ("运营商", "网关", "通道", "路由", "协议", "UNDELIV")),
    ("account_error", ("余额", "账户", "帐户", "权限", "未开通", "未报备")),
)


def classify(delivered: bool, code: str, message: str) -> str:
    if delivered:
        return "delivered"
    text = f"{message} {code}".upper()
    best: tuple[int, int, str] | None = None
    for order, (category, needles) in enumerate(_RULES):
        for needle in needles:
            pos = text.find(needle.upper())
            if pos >= 0 and (best is None or (pos, order) < best[:2]):
                best = (pos, order, category)
    return best[2] if best else "unknown"
