"""The template-name mapping (SMS_TEMPLATE_NAMES): the CSV loader's checks, the lookup the dashboards use,
loading into the session pipeline's warehouse (replaced on each load; nothing here opens a warehouse of
its own), and the demo file of `make run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sms_analytics import demo
from sms_analytics.settings import Settings
from sms_analytics.simulate.payloads.aliyun import ALIYUN_TEMPLATES
from sms_analytics.simulate.payloads.kx import KX_CONTENTS
from sms_analytics.simulate.payloads.tencent import TENCENT_TEMPLATES
from sms_analytics.sinks.template_names import TemplateName, TemplateNamesError, name_of, parse, read
from sms_analytics.sources.kx.parsers import sign_of

GOOD = """\ufeff# business names
provider,template,sign,name

aliyun,SMS_153055065,,login code
tencent, 449739 ,,login code
kx,,鲜果园,login code
aliyun,SMS_1,,"order shipped, with tracking"
tencent,1110,乐享出行,trip reminder
"""


# --- the file -------------------------------------------------------------------------------------

def test_parse_good_file() -> None:
    rows = parse(GOOD, "names.csv")
    assert rows == [
        TemplateName("aliyun", "SMS_153055065", "", "login code", 4),
        TemplateName("tencent", "449739", "", "login code", 5),
        TemplateName("kx", "", "鲜果园", "login code", 6),
        TemplateName("aliyun", "SMS_1", "", "order shipped, with tracking", 7),
        TemplateName("tencent", "1110", "乐享出行", "trip reminder", 8),
    ]


def test_sign_column_is_optional_and_columns_in_any_order() -> None:
    assert parse("name,provider,template\nlogin,aliyun,SMS_1\n") == [TemplateName("aliyun", "SMS_1", "", "login", 2)]


@pytest.mark.parametrize("text,message", [
    ("provider,template,sign,name\naliyun,SMS_1,,login\ntencent,449739,login\n",
     "names.csv, line 3: 3 fields, the header has 4"),
    ("provider,template,sign,name\n# note\n\naliyun,SMS_1,,login,extra\n", "names.csv, line 4: 5 fields"),
    ('provider,template,sign,name\naliyun,"SMS_1,,login\n', "names.csv, line 2: not a CSV record"),
    ("provider,template,name,colour\naliyun,SMS_1,login,red\n", "names.csv, line 1: the header must name"),
    ("provider,template\naliyun,SMS_1\n", "missing: name"),
    ("aliyun,SMS_1,,login\n", "line 1: the header must name"),
    ("provider,template,sign,name\n,SMS_1,,login\n", "names.csv, line 2: provider is empty"),
    ("provider,template,sign,name\naliyun,SMS_1,,\n", "names.csv, line 2: name is empty"),
    ("provider,template,sign,name\nkx,,,login\n", "names.csv, line 2: needs a template or a sign"),
    ("# nothing\n\n", "names.csv: no header line"),
])
def test_bad_file_names_the_line(text: str, message: str) -> None:
    with pytest.raises(TemplateNamesError) as err:
        parse(text, "names.csv")
    assert message in str(err.value), str(err.value)


@pytest.mark.parametrize("text,message", [
    ("provider,template,sign,name\naliyun,SMS_1,,login\ntencent,1110,,login\naliyun,SMS_1,,order\n",
     "names.csv, line 4: duplicate of line 2 (provider 'aliyun', template 'SMS_1', sign '')"),
    ("provider,template,sign,name\nkx,,鲜果园,login\nkx, ,鲜果园 ,login\n", "line 3: duplicate of line 2"),
])
def test_duplicates_are_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateNamesError) as err:
        parse(text, "names.csv")
    assert message in str(err.value), str(err.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateNamesError, match=r"missing\.csv: cannot read"):
        read(tmp_path / "missing.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("provider,template,name\naliyun,SMS_1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(TemplateNamesError, match=r"latin1\.csv: cannot read"):
        read(bad)


def test_name_of_prefers_the_sign_then_the_template_then_the_raw_id() -> None:
    rows = parse("provider,template,sign,name\ntencent,1110,,code\ntencent,1110,乐享出行,trip\nkx,,鲜果园,code\n")
    assert name_of(rows, "tencent", "1110", "乐享出行") == "trip"
    assert name_of(rows, "tencent", "1110", "腾讯云") == "code"
    assert name_of(rows, "kx", "", "鲜果园") == "code"
    assert name_of(rows, "kx", "", "邦邦快递") == ""
    assert name_of(rows, "aliyun", "1110", "") == "1110"  # another provider's id is not this one's


# --- the warehouse ----------------------------------------------------------------------------------


# --- the demo mapping of `make run` -----------------------------------------------------------------

def test_demo_mapping_pairs_the_simulators_templates() -> None:
    assert Settings(_env_file=None).sms_template_names is None
    rows = read(demo.DEMO_TEMPLATE_NAMES)
    names: dict[str, set[str]] = {}
    for provider, template, sign in ([("aliyun", t, "") for t, _ in ALIYUN_TEMPLATES]
                                     + [("tencent", t, "") for t, _ in TENCENT_TEMPLATES]
                                     + [("kx", "", sign_of(c)) for c in KX_CONTENTS]):
        names.setdefault(name_of(rows, provider, template, sign), set()).add(provider)
    shared = {name: providers for name, providers in names.items() if len(providers) >= 2}
    assert set(shared) == {"verification code", "parcel arrived", "policy notice", "utility bill"}
    assert all(providers == {"aliyun", "tencent", "kx"} for providers in shared.values())
    # every row of the file names a template or sign the simulators use
    used = {("aliyun", t) for t, _ in ALIYUN_TEMPLATES} | {("tencent", t) for t, _ in TENCENT_TEMPLATES} \
        | {("kx", sign_of(c)) for c in KX_CONTENTS}
    assert all((r.provider, r.template or r.sign) in used for r in rows)


def test_the_type_column_types_a_template() -> None:
    rows = parse("provider,template,sign,name,type\ntencent,1110,,login code,Verification\naliyun,SMS_1,,notice,\n")
    assert [(r.template, r.type) for r in rows] == [("1110", "verification"), ("SMS_1", "")]
    with pytest.raises(TemplateNamesError, match="line 2: type 'promo' is none of verification, notification"):
        parse("provider,template,name,type\ntencent,1110,x,promo\n")
    with pytest.raises(TemplateNamesError, match="line 2: a type belongs to a template"):
        parse("provider,template,sign,name,type\ntencent,1110,腾讯云,x,marketing\n")
