"""The error-code knowledge base: the CSV against the seeds, the taxonomy rules, the lookup order.

The seed tests need the provider documents in ../shared/seeds (relative to the repository root);
without them they are skipped, the tests of the packaged CSV and of the rules still run.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sms_analytics.model.knowledge import Entry, KnowledgeBase
from sms_analytics.model.taxonomy import CATEGORIES, PERMANENT, categorize

REPO = Path(__file__).resolve().parents[3]
SEEDS = (REPO / ".." / "shared" / "seeds").resolve()
SCRIPT = REPO / "scripts" / "build_error_codes.py"
CSV_PATH = REPO / "src" / "sms_analytics" / "model" / "error_codes.csv"
HEADER = "source,carrier,code,description,action,stage,failure_category,permanent,seed_file,seed_line"

needs_seeds = pytest.mark.skipif(
    not all(any(SEEDS.glob(f"{n}_*.txt")) for n in ("000", "001", "002", "003", "004")),
    reason=f"provider seed documents not found in {SEEDS} (../shared/seeds from the repository root)",
)


def _builder():
    spec = importlib.util.spec_from_file_location("build_error_codes", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_error_codes", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def builder():
    return _builder()


@pytest.fixture(scope="module")
def build(builder):
    return builder.build(SEEDS)


@pytest.fixture(scope="module")
def kb():
    return KnowledgeBase.load()


def _seed_lines(prefix: str) -> tuple[str, list[str]]:
    path = next(SEEDS.glob(f"{prefix}_*.txt"))
    return path.name, path.read_text(encoding="utf-8").split("\n")


def _index(lines: list[str], pattern: str, start: int = 0) -> int:
    rx = re.compile(pattern)
    return next(i for i in range(start, len(lines)) if rx.search(lines[i]))


def _count(lines: list[str], start: int, end: int, pattern: str, exclude: str | None = None) -> int:
    rx, ex = re.compile(pattern), re.compile(exclude) if exclude else None
    return sum(1 for line in lines[start:end] if rx.search(line) and not (ex and ex.search(line)))


# --------------------------------------------------------------------------------------------
# (a) independent row counts: line ranges between headings + one regex per table over raw lines

TC_FAMILIES = (
    "ActionOffline|AuthFailure|DryRunOperation|FailedOperation|InternalError|InvalidAction|"
    "InvalidParameter|InvalidParameterValue|InvalidRequest|IpInBlacklist|IpNotInWhitelist|"
    "LimitExceeded|MissingParameter|NoSuchProduct|NoSuchVersion|RequestLimitExceeded|"
    "RequestSizeLimitExceeded|ResourceInUse|ResourceInsufficient|ResourceNotFound|"
    "ResourceUnavailable|ResponseSizeLimitExceeded|ServiceUnavailable|UnauthorizedOperation|"
    "UnknownParameter|UnsupportedOperation|UnsupportedProtocol|UnsupportedRegion"
)


def independent_counts() -> dict[tuple[str, int], int]:
    """{(seed file, 1-based first line of the table): rows} counted without the builder."""
    out: dict[tuple[str, int], int] = {}

    name, L = _seed_lines("000")
    a = _index(L, r"^6\.1 API 错误码$")
    b = _index(L, r"^6\.2 短信发送状态回执错误码$", a)
    c = _index(L, r"^7 发送短信$", b)
    out[(name, a + 1)] = _count(L, a, b, r"^\S+\t", exclude=r"^错误码 \(Code\)\t")
    out[(name, b + 1)] = _count(L, b, c, r"^(移动|联通|电信|供应商|阿里平台)\t")

    name, L = _seed_lines("001")
    a = _index(L, r"^### 12\.1 ")
    b = _index(L, r"^### 12\.2 ", a)
    out[(name, a + 1)] = _count(L, a, b, r"^\S+\t", exclude=r"^错误码\t")
    out[(name, b + 1)] = _count(L, b, len(L), r"^\S+\t", exclude=r"^错误码\t")

    name, L = _seed_lines("002")
    # a table starts at its heading; it ends at the next heading, at the next API page (本接口)
    # or at the page that follows it; rows are lines that start with a code of the table's kind
    starts = [
        i for i, line in enumerate(L)
        if re.match(r"^\s*(6\. 错误码|公共错误码|业务错误码|短信发送错误码|回执状态错误码|(错误码|错误代码) 错误描述)$", line)
    ]
    ends = [i for i, line in enumerate(L) if re.match(r"^(本接口 \(|\s*接口描述$|5\. 签名演示$| 签名方法 v1 )", line)]
    for n, s in enumerate(starts):
        e = min([x for x in starts[n + 1:] + ends if x > s], default=len(L))
        if L[s].strip() == "回执状态错误码":
            rx = r"^\s*\S.* (三网|移动|联通|电信|无效号码) \S"
        elif L[s].strip() == "短信发送错误码":
            rx = r"^\s*\d{4,5}(\s|$)"
        else:
            rx = rf"^\s*({TC_FAMILIES})(\.\w+)?(\s|$)"
        rows = _count(L, s, e, rx)
        if rows:  # 公共错误码 is also a paragraph title before any table
            out[(name, s + 1)] = rows

    name, L = _seed_lines("003")
    titles = [i for i in range(len(L) - 1) if L[i + 1].startswith("错误码 \t")]
    for n, s in enumerate(titles):
        e = titles[n + 1] if n + 1 < len(titles) else len(L)
        out[(name, s + 1)] = _count(L, s + 2, e, r"\t")

    name, L = _seed_lines("004")
    heads = [i for i, line in enumerate(L) if line.startswith("#")]
    for n, s in enumerate(heads):
        e = heads[n + 1] if n + 1 < len(heads) else len(L)
        rows = _count(L, s, e, r"^\|", exclude=r"^\|\s*(-|序号|错误码|状态值)")
        if rows:
            out[(name, s + 1)] = rows
    return out


@needs_seeds
def test_row_counts_per_table_match_the_seeds(build):
    parsed = {(t.seed_file, t.first_line): len(t.rows) for t in build.tables}
    assert parsed == independent_counts()
    by_source = Counter()
    for t in build.tables:
        by_source[(t.seed_file[:3], t.source)] += len(t.rows)
    assert 2300 <= by_source[("000", "aliyun")] - 39 <= 2400  # §6.2 receipt rows
    assert by_source[("002", "tencent")] > 4000


@needs_seeds
def test_csv_rows_are_the_table_rows_minus_duplicates(build, builder):
    kept = Counter((r["seed_file"], r["seed_line"]) for r in build.rows)
    assert max(kept.values()) == 1
    dropped = [r for _, r in build.in_table] + [r for _, r, _ in build.cross_table]
    assert len(build.rows) + len(dropped) == sum(len(t.rows) for t in build.tables)
    first_line = {}
    for r in build.rows:
        first_line.setdefault((r["source"], r["carrier"], r["code"], r["stage"]), (r["seed_file"], r["seed_line"]))
    for r in dropped:  # every dropped row repeats the key of a kept row that comes earlier
        f = first_line[builder.key(r)]
        assert f < (r.seed_file, r.seed_line)
    for t in build.tables:  # and every table keeps its rows minus its duplicates
        inside = sum(1 for (f, line) in kept if f == t.seed_file and t.first_line <= line <= t.last_line)
        dups = sum(1 for tt, _ in build.in_table if tt is t) + sum(1 for tt, _, _ in build.cross_table if tt is t)
        assert inside == len(t.rows) - dups, t.name


# --------------------------------------------------------------------------------------------
# (b) the CSV on disk is what the script builds now


@needs_seeds
def test_csv_on_disk_equals_a_rebuild(build, builder):
    on_disk = CSV_PATH.read_text(encoding="utf-8")
    assert on_disk == builder.render(build), "error_codes.csv is stale: run python scripts/build_error_codes.py"


def test_build_is_deterministic(builder):
    if not SEEDS.exists():
        pytest.skip(f"provider seed documents not found in {SEEDS}")
    assert builder.render(builder.build(SEEDS)) == builder.render(builder.build(SEEDS))


# --------------------------------------------------------------------------------------------
# (c) every row: one category, its permanent flag, and a seed line that holds the code


def _csv_rows() -> list[dict]:
    text = CSV_PATH.read_text(encoding="utf-8")
    assert text.startswith("# version: ")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert body.split("\n", 1)[0] == HEADER
    return list(csv.DictReader(io.StringIO(body)))


def test_every_row_has_one_known_category_and_its_flag():
    rows = _csv_rows()
    assert rows
    for r in rows:
        assert r["failure_category"] in CATEGORIES
        assert r["permanent"] == str(int(PERMANENT[r["failure_category"]]))
        assert r["source"] in ("aliyun", "tencent", "kx", "cmpp", "map")
        assert r["stage"] in ("api", "submit", "receipt")
        assert r["carrier"] in ("", "移动", "联通", "电信", "三网", "供应商", "阿里平台")
        assert r["code"] == r["code"].strip() and r["code"]
    keys = Counter((r["source"], r["carrier"], r["code"], r["stage"], r["description"]) for r in rows)
    assert max(keys.values()) == 1  # a code may have several meanings, but each once


@needs_seeds
def test_every_seed_line_contains_its_code():
    files = {p.name: p.read_text(encoding="utf-8").split("\n") for p in SEEDS.glob("00[0-4]_*.txt")}
    for r in _csv_rows():
        line = files[r["seed_file"]][int(r["seed_line"]) - 1]
        assert r["code"] in line, (r["seed_file"], r["seed_line"], r["code"])


def test_packaged_csv_loads(kb):
    assert len(kb.rows()) == len(_csv_rows())
    assert all(isinstance(e, Entry) and isinstance(e.permanent, bool) for e in kb.rows())
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        kb.rows()[0].code = "x"  # frozen


# --------------------------------------------------------------------------------------------
# (d) examples


def test_same_code_differs_per_carrier(kb):
    mobile = kb.lookup("tencent", "DB:0005", "mobile", "receipt")
    unicom = kb.lookup("tencent", "DB:0005", "unicom", "receipt")
    assert (mobile.carrier, mobile.description) == ("移动", "运营商内部错误")
    assert (unicom.carrier, unicom.description) == ("联通", "空号")
    assert kb.classify("tencent", "DB:0005", "mobile", "receipt")[:2] == ("carrier_error", False)
    assert kb.classify("tencent", "DB:0005", "unicom", "receipt")[:2] == ("invalid_number", True)
    assert kb.lookup("tencent", "DB:0005", "移动") == mobile  # the Chinese name works too


def test_first_named_cause_wins():
    assert categorize("停机、空号") == "unreachable"
    assert categorize("空号/停机/关机") == "invalid_number"
    assert categorize("运营商网关异常/空号/停机/关机") == "carrier_error"
    assert categorize("运营商关键字拦截/空号/停机/关机") == "content_blocked"
    assert categorize("运营商免打扰名单") == "blacklisted"
    assert categorize("运营商频率限制") == "rate_limited"
    assert categorize("终端内存异常") == "terminal_error"
    assert categorize("联通或电信号码空号或停机") == "invalid_number"  # 电信号码 is no 信号


def test_code_rules_and_success():
    assert categorize("短信接收失败", "EXPIRED") == "expired"
    assert categorize("", "EXPIRED") == "expired"
    assert categorize("短信接收失败", "UNDELIV") == "carrier_error"
    assert categorize("客户接收失败", "REJECTD") == "content_blocked"
    assert categorize("空号", "UNDELIV_64") == "invalid_number"  # the description decides first
    assert categorize("", "DELIVRD") == "delivered"
    assert categorize("用户短信送达成功", "DELIVRD") == "delivered"
    assert categorize("尚未成功登录") != "delivered"
    assert categorize("Specified time stamp or date value is expired.", stage="submit") == "account_error"


def test_stage_changes_the_meaning():
    assert categorize("业务停机", stage="submit") == "account_error"
    assert categorize("停机") == "unreachable"
    assert categorize("签名格式错误或者签名未审批", stage="receipt") == "content_blocked"
    assert categorize("签名格式错误或者签名未审批", stage="submit") == "account_error"
    assert categorize("模版变量里包含非法关键字", stage="submit") == "content_blocked"  # 模版 is weak
    assert categorize("请求下发短信超时", stage="submit") == "carrier_error"
    assert categorize("等待状态报告超时") == "expired"


def test_examples_from_the_tables(kb):
    assert kb.classify("kx", "EXPIRED", "", "receipt")[0] == "expired"
    assert kb.classify("kx", "DELIVRD", "", "receipt")[:2] == ("delivered", True)
    assert kb.classify("aliyun", "isv.BUSINESS_LIMIT_CONTROL", "", "submit")[:2] == ("rate_limited", False)
    assert kb.lookup("aliyun", "isv.BUSINESS_LIMIT_CONTROL", "", "submit").source == "aliyun"
    assert kb.classify("tencent", "LimitExceeded.PhoneNumberDailyLimit", "", "submit")[0] == "rate_limited"
    assert kb.classify("tencent", "DELIVRD", "mobile", "receipt")[0] == "delivered"
    ok = kb.lookup("kx", "0", "", "submit")
    assert (ok.failure_category, ok.stage) == ("delivered", "submit")  # submit success: see the stage


def test_unknown_code(kb):
    assert kb.lookup("kx", "ZZ-NOT-A-CODE", "mobile", "receipt") is None
    assert kb.classify("kx", "ZZ-NOT-A-CODE", "mobile", "receipt") == ("unknown", False, None)
    # A code not in the tables is unknown whatever its text says, so ops see it in sms.unmapped_codes.
    assert kb.classify("aliyun", "ZZ-NOT-A-CODE", "", "receipt", description="用户关机") == (
        "unknown", False, None
    )


def _entry(source, carrier, code, stage="receipt", description="x", category="unknown"):
    return Entry(source, carrier, code, description, "", stage, category, PERMANENT[category], "f", 1)


def test_lookup_order():
    kb = KnowledgeBase([
        _entry("cmpp", "", "C1", description="cmpp"),
        _entry("map", "", "C1", description="map"),
        _entry("kx", "", "C2", description="kx"),
        _entry("map", "", "C2", description="map"),
        _entry("tencent", "联通", "C3", description="unicom"),
        _entry("tencent", "三网", "C3", description="any"),
        _entry("tencent", "移动", "C3", description="mobile"),
        _entry("tencent", "电信", "C4", description="telecom"),
        _entry("aliyun", "供应商", "C5", description="supplier"),
        _entry("aliyun", "电信", "C5", description="telecom"),
    ])
    d = lambda *a, **k: kb.lookup(*a, **k).description  # noqa: E731
    assert d("kx", "C1") == "cmpp"  # kx: cmpp, then map
    assert d("aliyun", "C1") == "map"  # aliyun and tencent: map, then cmpp
    assert d("tencent", "C1") == "map"
    assert d("kx", "C2") == "kx"  # the provider's own table first
    assert d("tencent", "C3", "mobile") == "mobile"  # the exact carrier first
    assert d("tencent", "C3", "unicom") == "unicom"
    assert d("tencent", "C3", "telecom") == "any"  # then 三网/供应商/empty
    assert d("tencent", "C3", "unknown") == "any"  # unknown carrier: the generic row first,
    assert d("tencent", "C4", "") == "telecom"  # then any single carrier
    assert kb.lookup("tencent", "C4", "mobile") is None  # a known carrier never takes another's row
    assert d("aliyun", "C5", "telecom") == "telecom"
    assert d("aliyun", "C5", "mobile") == "supplier"


def test_lookup_order_on_the_tables(kb):
    assert kb.lookup("kx", "MA:0003", "", "receipt").source == "cmpp"
    assert kb.lookup("tencent", "MA:0003").source == "cmpp"  # in no tencent or map table
    assert kb.lookup("kx", "mk:0010", "", "receipt").source == "map"
    assert kb.lookup("aliyun", "isv.QUERY_DATE_ILLEGAL").source == "map"
    assert kb.lookup("kx", "12", "", "receipt").source == "map"  # cmpp has 12 only at submit
    assert kb.lookup("kx", "12", "", "submit").source == "cmpp"
    assert kb.lookup("tencent", "-14", "telecom", "receipt").carrier == "电信"
    assert kb.lookup("tencent", "-14", "mobile", "receipt").carrier == "三网"


def test_lookup_matching(kb):
    assert kb.lookup("kx", "  DELIVRD ").code == "DELIVRD"  # stripped
    assert kb.lookup("kx", "delivrd").code == "DELIVRD"  # case-insensitive fallback
    assert kb.lookup("kx", "F2099").code == "F20*"  # a table wildcard
    assert kb.lookup("kx", "MO:0777", stage="receipt").code == "MO:NNNN"
    assert kb.lookup("tencent", "LimitExceeded.PhoneNumberDailyLimit", stage="receipt") is None
    assert kb.lookup("tencent", "LimitExceeded.PhoneNumberDailyLimit", stage="api").stage == "api"
    assert kb.lookup("tencent", "", "mobile") is None
    with pytest.raises(ValueError):
        kb.lookup("nope", "DELIVRD")


# --------------------------------------------------------------------------------------------
# (e) --stats


@needs_seeds
def test_stats_prints_category_counts():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--stats"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(\w+)\s+(\d+)\s+permanent=", out, re.M)}
    assert set(counts) == set(CATEGORIES)
    assert sum(counts.values()) == len(_csv_rows())
    assert "in-table duplicates:" in out and "cross-table duplicates:" in out


# --------------------------------------------------------------------------------------------
# (e) a code with several meanings keeps them all


@needs_seeds
def test_every_meaning_of_a_code_is_kept(build, builder, kb):
    """The Alibaba receipt table (§6.2) repeats codes with other descriptions: 147 rows differ from
    the first row of their (carrier, code); all of their meanings are in the knowledge base."""
    first: dict = {}
    differing = []
    for t in build.tables:
        for r in t.rows:
            f = first.setdefault(builder.key(r), r)
            if f is not r and t.source == "aliyun" and t.stage == "receipt" and r.description != f.description:
                differing.append(r)
    assert len(differing) == 147
    for r in differing:
        entry = kb.lookup("aliyun", r.code, r.carrier, "receipt")
        assert r.description in [m.description for m in kb.meanings(entry)], (r.seed_line, r.code)
    assert [b[1].seed_line for b in build.meanings] == sorted(b[1].seed_line for b in build.meanings)


def test_codes_with_several_meanings(kb):
    ambiguous = kb.ambiguous()
    assert len(ambiguous) == 64  # (carrier, code) pairs of the Alibaba receipt table
    assert sum(len(m) - 1 for m in ambiguous.values()) == 136  # further meanings (147 rows, 11 repeats)
    assert {k[0] for k in ambiguous} == {"aliyun"} and {k[3] for k in ambiguous} == {"receipt"}
    meanings = ambiguous[("aliyun", "供应商", "-14", "receipt")]
    assert [m.description for m in meanings] == ["手机号在用户黑名单", "msg_id超过50个字符"]
    resolved = kb.lookup("aliyun", "-14", "mobile", "receipt")
    assert resolved == meanings[0] and kb.meanings(resolved) == meanings  # the first resolves, as before


def test_explain_prints_every_meaning():
    from typer.testing import CliRunner

    from sms_analytics.cli import cli

    listed = CliRunner().invoke(cli, ["explain", "--", "-14"])
    assert listed.exit_code == 0, listed.output
    assert "手机号在用户黑名单" in listed.output and "msg_id超过50个字符" in listed.output
    resolved = CliRunner().invoke(cli, ["explain", "--provider", "aliyun", "--carrier", "mobile", "--", "-14"])
    assert resolved.exit_code == 0, resolved.output
    first, also = resolved.output.splitlines()[:2]
    assert "手机号在用户黑名单" in first and also.strip().startswith("also meant:") and "msg_id超过50个字符" in also
