"""The failure taxonomy: every provider code goes to exactly one failure category.

This module is the one place where the mapping rules are written down. It is pure (no I/O);
scripts/build_error_codes.py applies `categorize` to every row of the seed tables and stores the
result in error_codes.csv, and `KnowledgeBase.classify` applies it to the text a provider sent
with a code whose table row names no cause (a code in no table stays `unknown`).

Categories and the permanent flag (permanent = retrying the same message cannot help):

    delivered        permanent  the message arrived (or, at stage submit/api, the call succeeded:
                                the stage column tells which). "Permanent" because it is final:
                                there is nothing to retry.
    invalid_number   permanent  空号, 号码错误/异常/格式, 号段不存在, 销号, 号码不存在
    unreachable      temporary  关机, 停机, 欠费, 不在服务区, 无法接通, 暂停服务, 占线
    blacklisted      permanent  黑名单, 免打扰, 退订, 投诉, 拒收, 防火墙
    content_blocked  permanent  关键字, 敏感词, 违禁词, 屏蔽词, 内容拦截/非法/不合规, 审核(驳回), URL,
                                黑名单管控 (Alibaba: restricted words in variables), 拦截;
                                at stage receipt also signature/template rejected by the carrier
                                (签名, 模板, 报备, 实名)
    rate_limited     temporary  频控, 超频, 限额, 频率, 限频, 限流, 流控, 超限, 条数/次数限制, 上限,
                                轰炸, 重复; also the send-time window (营销短信发送时间限制, 时间段,
                                夜间): the same message goes through later
    expired          temporary  EXPIRED, 超时, 无状态报告, 等待状态报告(超时), 未匹配到状态报告, 过期
    terminal_error   temporary  终端, 内存, 信号, 非法设备, SIM
    carrier_error    temporary  运营商内部错误, 内部错误, 网关, 通道, 路由, 协议(应答), 网元, 短信中心,
                                SMSC, 厂家自定义, 携号转网, 连接, 系统错误/繁忙, 服务不可用
    account_error    permanent  余额, 账户/账号 problems, 权限, 授权, 鉴权, 密钥, 未开通, 套餐包; at stage
                                submit/api also the sender's request (参数, 校验, 格式, 长度, IP,
                                sig) and signature/template not registered or approved
                                (签名, 模板, 报备, 审批, 实名, 资质)
    unknown          temporary  nothing above is named. Temporary so that an unknown failure is
                                not written off: a retry policy may still try it.

How a description is categorized (`categorize(description, code, stage)`):

 1. Success. The code DELIVRD / DELIVERED (any case) is delivered. So is a description that
    states success (送达成功, 成功接收, 接收成功, 提交成功, 登录成功, 发送成功, 用户听完语音, or exactly
    成功 / OK / 正确) and has no negation (未, 不, 没, 非, 无, 失败).
 2. First named cause. Every rule of RULES below is searched in the description; the match that
    starts first wins, so a description naming several causes goes to the first one it names:
    停机、空号 -> unreachable, 空号/停机/关机 -> invalid_number, 运营商网关异常/空号 -> carrier_error.
    Tie-breaks at the same start: the longer match wins (号码格式 over 格式), then the earlier rule.
 3. Stage. Some words mean something else before the message left the provider (stage submit
    or api) than in a receipt (stage receipt):
      - 停机, 欠费, 停止服务, 暂停服务 name the sender's account at submit/api (isv.OUT_OF_SERVICE
        业务停机 is a suspended account) -> account_error; in a receipt they name the handset
        -> unreachable.
      - 超时 at submit/api is the API call timing out -> carrier_error; in a receipt -> expired.
      - 用户不存在 at submit/api is the API user -> account_error; in a receipt -> invalid_number.
      - 签名, 模板, 模版, 报备, 审批, 实名, 资质 (signature/template words) are weak: they decide
        only when the description names no other cause (模版变量里包含非法关键字 -> content_blocked).
        Then: receipt -> content_blocked (the carrier rejected the signature/template);
        submit/api -> account_error (not registered/approved: the sender must fix it).
      - Request words (校验, 格式, 解析, sig, 不支持, 不存在, 非法, 不合法, 禁用, 版本 …) are
        account_error at submit/api only. Words of a malformed message (参数, 内容为空, 超长,
        长度, 错误的, 字段, IP地址) are account_error at every stage: the sender must fix them.
      - In a receipt, gateway protocol faults (命令字, 消息结构, 协议, 长短信/子短信, 业务代码)
        are carrier_error.
    `stage` is "receipt" unless given; "submit" and "api" behave the same.
 4. Code rules, used only when the description names no cause (the description is searched
    before the code): EXPIRED -> expired; UNDELIV -> carrier_error (undeliverable, reason not
    given by the carrier); REJECTD -> content_blocked (rejected by the carrier's gateway, in
    practice its content/signature interception). The code is compared upper-cased, and a code
    that starts with one of them (UNDELIV_64, REJECTD174) counts as it.
 5. Otherwise unknown. A code that is not in the tables and has no usable description is unknown.

ASCII keywords (EXPIRED, SMSC, IP, sig, URL …) match case-sensitively, as they are written, so
the English text "time stamp ... is expired" is not the receipt status EXPIRED.
"""

from __future__ import annotations

import re

CATEGORIES: tuple[str, ...] = (
    "delivered", "invalid_number", "unreachable", "blacklisted", "content_blocked", "rate_limited",
    "expired", "terminal_error", "carrier_error", "account_error", "unknown",
)

PERMANENT: dict[str, bool] = {
    "delivered": True,  # final: there is nothing to retry
    "invalid_number": True,
    "unreachable": False,
    "blacklisted": True,
    "content_blocked": True,
    "rate_limited": False,
    "expired": False,
    "terminal_error": False,
    "carrier_error": False,
    "account_error": True,
    "unknown": False,  # not written off: a retry policy may still try it
}

RECEIPT, SUBMIT = "receipt", "submit"  # "api" behaves like "submit"
ANY = (RECEIPT, SUBMIT)

# (category, stages the rule applies to, weak, patterns). Ordered: at equal start and length the
# earlier rule wins. A weak rule only decides when no strong rule matched anywhere.
RULES: tuple[tuple[str, tuple[str, ...], bool, tuple[str, ...]], ...] = (
    ("invalid_number", ANY, False, (
        "空号", "号码错误", "号码异常", "号码格式", "号码不存在", "号码无效", "无效号码", "无效的号码",
        "号码不合法", "号码非法", "号码解析失败", "非法手机号", "手机号格式", "号段不存在", "号段错误",
        "销号", "错误的目的号码", "目的号码格式", "不存在的号码", "找不到用户", "用户不在网",
        "没有相关用户数据", "用户数据不存在", "非法用户", "非法号码", "号码不正确", "无法识别的号码",
        "号码有问题", "无归属地", "号段", "手机号异常", "接收用户号码", "被叫号码", "被叫长度",
        "错误的号码",
    )),
    ("invalid_number", (RECEIPT,), False, ("用户不存在",)),
    ("unreachable", (RECEIPT,), False, ("关机", "停机", "欠费", "暂停服务", "停止服务")),
    ("unreachable", ANY, False, (
        "不在服务区", "无法接通", "用户忙", "占线", "未接听", "无应答", "不可及", "漫游",
    )),
    ("blacklisted", ANY, False, ("黑名单", "免打扰", "退订", "投诉", "拒收", "防火墙")),
    ("content_blocked", ANY, False, (
        "关键字", "敏感词", "违禁词", "屏蔽词", "禁止发送内容", "内容拦截", "内容非法", "内容不合规",
        "内容审核", "审核不通过", "审核驳回", "人工驳回", "驳回", "违规", "黑内容", "不支持URL", "URL",
        "关键词", "非法关键字", "敏感字", "黑词", "非法内容", "危险短信", "高危", "屏蔽", "审核", "黑名单管控", "拦截",
    )),
    ("content_blocked", (RECEIPT,), True, ("签名", "模板", "模版", "报备", "实名", "审批", "资质")),
    ("rate_limited", ANY, False, (
        "频控", "超频", "限额", "频率", "限频", "限流", "流控", "流量控制", "超流量", "速度过快",
        "条数限制", "次数超限", "下发限制", "超限", "上限", "超过日最大", "日最大", "限制条数",
        "轰炸", "重复", "超量", "发送时间限制", r"时间段", "夜间", "时间禁止", "发送时间范围",
        "定时发送时间", "配额", "日下发", "下发条数", "频次", "超速", r"超[秒日周月]限", r"最多可?发",
        "次数", "月最大", "群发限制", "超发", r"一天\d+条", r"只能下发\d+条", "下发量太大",
        "最大提交量", "发送限制", "禁发时段", "超时间范围",
    )),
    ("expired", (RECEIPT,), False, ("超时", "过期", "有效期", "状态未返回", "72小时")),
    ("expired", ANY, False, (
        "EXPIRED", "无状态报告", "等待状态报告", "未匹配到状态报告", "状态报告超时", "未收到状态报告",
    )),
    ("terminal_error", ANY, False, ("终端", "内存", r"(?<!电)信号", "非法设备", "SIM")),
    ("carrier_error", (SUBMIT,), False, ("超时", "协议应答", "未正常响应")),
    ("carrier_error", (RECEIPT,), False, (
        "协议", "命令字", "消息结构", "消息类型", "优先级", "版本号错误", "版本太高", "端口错误",
        "时间格式", "长短信", "子短信", "业务代码", "服务代码", "ECSI", "尚未成功登录",
        "运营商发送失败",
    )),
    ("carrier_error", ANY, False, (
        "运营商内部错误", "运营商错误", "运营商出错", "内部错误", "网关", "通道", "路由", "网元",
        "短信中心", "SMSC", "SMMC", "厂家自定义", "携号转网", "连接", "系统错误", "系统忙", "系统繁忙",
        "服务不可用", "暂时不可用", "网络", "收发包", "SYSTEM_ERROR",
    )),
    ("account_error", (SUBMIT,), False, (
        "停机", "欠费", "停止服务", "暂停服务", "用户不存在", "参数", "校验", "格式", "长度", "太长",
        "过长", "字符数", "解析", "IP 地址", "IP地址", "IP 不在", "IP错误", "IP 校验", "源IP", "sig",
        "Sig", "sign", "不支持", "不存在", "错误的", "未授权", "Authorization", "Token", "MFA",
        "signature", "nonce", "not valid", "not found", "time stamp", "超过限制", "退订方式",
        "请求协议", "禁止提供服务", "禁用", "请求发起时间", "个人用户", "禁发", "个数超过", "群发请求",
        "无效的", "接口已下线", "版本", "号码数", "内容为空", "推送地址", "非法", "不合法",
    )),
    ("account_error", ANY, False, (
        "余额", "权限", "授权", "鉴权", "认证", "密钥", "密码", "未开通", "尚未开通", "开通",
        "套餐包", "账户", "帐户", r"(?:账号|帐号)(?:不存在|异常|信息|状态|拦截|与|被|已|停用|禁用|错误)",
        "资费", "计费", "扣费", "扩展号", "扩展码", "白名单", "预付费", "用户名不存在", "clientid",
        # the sender's message or request is malformed (a receipt can report it too)
        "参数", "内容为空", "空内容", "超长", "太长", "过长", "长度", "IP地址", "IP错误", "ip错误",
        "错误的", "字段", "表空",
    )),
    ("account_error", (SUBMIT,), True, ("签名", "模板", "模版", "报备", "实名", "审批", "资质")),
)

_SUCCESS = re.compile(r"送达成功|成功接收|接收成功|提交成功|登录成功|发送成功|调用成功|听完语音")
_SUCCESS_EXACT = frozenset({"成功", "OK", "正确"})
_NEGATION = re.compile(r"未|不|没|非|无|失败")
_CODE_RULES: tuple[tuple[str, str], ...] = (
    ("DELIVRD", "delivered"), ("DELIVERED", "delivered"),
    ("EXPIRED", "expired"), ("UNDELIV", "carrier_error"), ("REJECTD", "content_blocked"),
)

_COMPILED = tuple(
    (category, stages, weak, re.compile("|".join(f"(?:{p})" for p in sorted(patterns, key=len, reverse=True))))
    for category, stages, weak, patterns in RULES
)


def _stage(stage: str | None) -> str:
    return RECEIPT if (stage or RECEIPT) == RECEIPT else SUBMIT


def _first_cause(text: str, stage: str) -> str | None:
    """The category of the cause named first in `text`, or None when no rule matches."""
    best: tuple[int, int, int, int, str] | None = None  # (weak, start, -length, order, category): minimal wins
    for order, (category, stages, weak, rx) in enumerate(_COMPILED):
        if stage not in stages:
            continue
        for m in rx.finditer(text):
            cand = (int(weak), m.start(), -(m.end() - m.start()), order)
            if best is None or cand < best[:4]:
                best = (*cand, category)
            break  # finditer yields the leftmost match first; later ones cannot start earlier
    return best[4] if best else None


def _code_rule(code: str) -> str | None:
    c = code.strip().upper()
    for prefix, category in _CODE_RULES:
        if c == prefix or c.startswith(prefix):
            return category
    return None


def categorize(description: str, code: str = "", stage: str = "receipt") -> str:
    """The failure category of a provider code with its description (see the module docstring)."""
    text = (description or "").strip()
    st = _stage(stage)
    if (code or "").strip().upper() in ("DELIVRD", "DELIVERED"):
        return "delivered"
    if text in _SUCCESS_EXACT or (_SUCCESS.search(text) and not _NEGATION.search(text)):
        return "delivered"
    found = _first_cause(text, st)
    if found:
        return found
    return _code_rule(code or "") or "unknown"
