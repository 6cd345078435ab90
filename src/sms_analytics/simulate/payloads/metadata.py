"""The templates and signs the simulated traffic uses, as the providers' metadata APIs describe them
(Alibaba QuerySmsTemplate / QuerySmsSign, seed 000 §10.2 / §9.3; Tencent DescribeSmsTemplateList /
DescribeSmsSignList, seed 002). The codes are those of the simulated sends (`aliyun.ALIYUN_TEMPLATES`,
`ALIYUN_SIGNS`, `tencent.TENCENT_TEMPLATES`, `TENCENT_SIGNS`, and the provider lane's 阿里云 sign), each
with a name, a content, the provider's own type code and a review status."""

from __future__ import annotations

from dataclasses import dataclass

from sms_analytics.simulate.payloads.aliyun import ALIYUN_SIGNS, ALIYUN_TEMPLATES
from sms_analytics.simulate.payloads.tencent import TENCENT_SIGNS, TENCENT_TEMPLATES


@dataclass(frozen=True, slots=True)
class SimTemplate:
    """`kind`: Alibaba TemplateType (0 验证码, 1 短信通知, 2 推广短信, 3 国际/港澳台消息); Tencent
    International (0 国内, 1 国际/港澳台: its list API has no other type). `status`: the provider's
    TemplateStatus (Alibaba 0 审核中, 1 通过, 2 失败) or StatusCode (Tencent 0 生效, 1 审核中, 2 待生效, -1 失败)."""

    code: str
    name: str
    content: str
    kind: int
    status: int
    reason: str = ""
    created: int = 1_700_000_000  # epoch seconds


@dataclass(frozen=True, slots=True)
class SimSign:
    name: str
    status: int
    sign_id: int = 0  # Tencent's SignId
    reason: str = ""
    created: int = 1_700_000_000


ALIYUN_TEMPLATE_CATALOGUE: tuple[SimTemplate, ...] = (
    SimTemplate("SMS_153055065", "登录验证码", "您的验证码为${code}，5分钟内有效，请勿泄露。", 0, 1),
    SimTemplate("SMS_152550005", "快递到达通知", "您的快递已到${station}，取件码${code}。", 1, 1),
    SimTemplate("SMS_205392047", "会员促销", "会员日全场8折，回TD退订。", 2, 1),
    SimTemplate("SMS_217436583", "保单通知", "尊敬的客户，您的保单${policy}已生效，保障期间及条款详见电子保单，如有疑问请致电客服热线。", 1, 1),
    SimTemplate("SMS_229843212", "燃气账单", "尊敬的用户，您本月燃气费用${amount}元已出账，请于${date}前缴纳，逾期将产生滞纳金，可通过线上营业厅或自助终端缴费，详情请咨询客服。", 1, 1),
    SimTemplate("SMS_300000001", "海外验证码", "Your code is ${code}.", 3, 2, "非验证码类型短信，请选择短信通知类型为推广短信。"),
)
ALIYUN_SIGN_CATALOGUE: tuple[SimSign, ...] = (
    *(SimSign(name, 1) for name in ("阿里云", *ALIYUN_SIGNS)),
    SimSign("待审签名", 0),
)
TENCENT_TEMPLATE_CATALOGUE: tuple[SimTemplate, ...] = (
    SimTemplate("1110", "验证码", "您的验证码是{1}", 0, 0),
    SimTemplate("449739", "包裹到达", "您的包裹已到{1}，请凭取件码{2}领取", 0, 0),
    SimTemplate("1528346", "出行通知", "您预订的{1}行程已确认，出发时间{2}，请提前到达并携带有效证件，如需改签或退票请在出发前操作。", 0, 0),
    SimTemplate("1733921", "健康提醒", "您预约的{1}体检将于{2}进行，请空腹前往，携带身份证件，体检报告将在检查完成后三个工作日内发送到您的手机。", 0, 0),
    SimTemplate("2001", "International code", "Your code is {1}", 1, 1),
)
TENCENT_SIGN_CATALOGUE: tuple[SimSign, ...] = (
    *(SimSign(name, 0, sign_id) for sign_id, name in enumerate(TENCENT_SIGNS, start=1110)),
)

if (not {t.code for t in ALIYUN_TEMPLATE_CATALOGUE} >= {c for c, _ in ALIYUN_TEMPLATES}
        or not {t.code for t in TENCENT_TEMPLATE_CATALOGUE} >= {c for c, _ in TENCENT_TEMPLATES}):
    raise ValueError("the metadata catalogue must describe every template the simulated traffic uses")
