#!/usr/bin/env python3
"""Rebuild the error-code knowledge base (src/sms_analytics/model/error_codes.csv) from the seeds.

    python scripts/build_error_codes.py [SEEDS_DIR] [--out PATH] [--stats] [--check]

SEEDS_DIR defaults to ../shared/seeds relative to the repository root. Every error-code and
receipt-code table of the provider documents becomes rows of one CSV (one row per code and
carrier), each with the seed file and the 1-based line its code stands on. The failure
category comes from sms_analytics.model.taxonomy.categorize (the rules are written down there).

Tables and the stage given to their rows (stage = when the code is returned):

    000 Alibaba   §6.1 API 错误码                                  aliyun  submit
                  §6.2 短信发送状态回执错误码 (carrier column)       aliyun  receipt
    001 KX        §12.1 提交短信过程中-接口返回常见错误代码          kx      submit
                  §12.2 成功提交短信后-状态回执报告错误代码          kx      receipt
    002 Tencent   签名失败 (signature v3 and v1 pages)              tencent api
                  "6. 错误码" of every API page: SendSms            tencent submit
                                                 all other APIs     tencent api
                  错误码 page: 公共错误码, 业务错误码               tencent api
                  短信发送错误码 (1001 … 60008, the send call)       tencent submit
                  回执状态错误码 (carrier column)                   tencent receipt
    003 CMPP      登录过程中 (login)                                cmpp    api
                  提交短信过程中 (submit)                           cmpp    submit
                  状态报告 (MA:xxxx / MO:xxxx)                      cmpp    receipt
                  推送报告给客户 (report push to the customer)       cmpp    api
    004 map       短信 SMS (field receipt codes)                    map     receipt
                  alibaba.aliqin.fc.sms.num.send                    map     submit
                  alibaba.aliqin.fc.sms.num.query                   map     api
                  语音 Voice (call result status)                   map     receipt
                  voice/tts singlecall, doublecall (send calls)     map     submit

Carrier is the seed's own word (移动, 联通, 电信, 三网, 供应商, 阿里平台) or empty when the table has
no carrier column. Six Tencent receipt rows carry the class 无效号码 in the carrier column; they name
no carrier, so their carrier is empty.

Duplicates: the key is (source, carrier, code, stage). Within one table, a later row with the key
of an earlier row is another meaning of that code when its description differs, and is kept: the
Alibaba receipt table gives 64 codes two or more meanings (147 rows whose description differs from
the code's first row; 136 further meanings once the 11 repeats among them are dropped). With the
same description it is dropped and counted ("in-table"). A row whose key an earlier table has is
dropped and counted ("cross-table", e.g. the same FailedOperation.* code on several Tencent API
pages, worded per page). The first row of a key stays first in the CSV (seed order), so it is the
meaning KnowledgeBase.lookup resolves; `--stats` prints all of it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from sms_analytics.model.taxonomy import CATEGORIES, PERMANENT, categorize  # noqa: E402

DEFAULT_SEEDS = (REPO / ".." / "shared" / "seeds").resolve()
DEFAULT_OUT = REPO / "src" / "sms_analytics" / "model" / "error_codes.csv"
VERSION = 1
HEADER = (
    "source", "carrier", "code", "description", "action", "stage",
    "failure_category", "permanent", "seed_file", "seed_line",
)


@dataclass
class Row:
    source: str
    carrier: str
    code: str
    description: str
    action: str
    stage: str
    seed_file: str
    seed_line: int


@dataclass
class Table:
    seed_file: str
    name: str
    source: str
    stage: str
    first_line: int  # 1-based, the table's heading or header line
    last_line: int  # 1-based, the table's last row line (inclusive)
    rows: list[Row] = field(default_factory=list)  # every row of the table, duplicates included


# ----------------------------------------------------------------------------------------------
# helpers


def _seed(seeds: Path, prefix: str) -> Path:
    found = sorted(seeds.glob(f"{prefix}_*.txt"))
    if len(found) != 1:
        raise SystemExit(f"expected one seed {prefix}_*.txt in {seeds}, found {len(found)}")
    return found[0]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


_TAG = re.compile(r"<[^>]+>")


def _clean(text: str) -> str:
    text = _TAG.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def _join(parts: list[str]) -> str:
    """Join PDF-wrapped cell lines: no space inside CJK text, one space between ASCII words."""
    out = ""
    for p in (p.strip() for p in parts):
        if not p:
            continue
        if out and out[-1].isascii() and out[-1].isalnum() and p[0].isascii() and p[0].isalnum():
            out += " "
        out += p
    return out


def _find(lines: list[str], pattern: str, start: int = 0) -> int:
    rx = re.compile(pattern)
    for i in range(start, len(lines)):
        if rx.search(lines[i]):
            return i
    raise SystemExit(f"anchor {pattern!r} not found")


# ----------------------------------------------------------------------------------------------
# 000 Alibaba Cloud SMS


def parse_aliyun(path: Path) -> list[Table]:
    lines, name = _lines(path), path.name
    a = _find(lines, r"^6\.1 API 错误码\s*$")
    b = _find(lines, r"^6\.2 短信发送状态回执错误码\s*$", a)
    c = _find(lines, r"^7 发送短信\s*$", b)
    api = Table(name, "§6.1 API 错误码", "aliyun", "submit", a + 1, a + 1)
    for i in range(a + 1, b):
        cells = lines[i].split("\t")
        if len(cells) < 2 or cells[0].startswith("错误码"):
            continue
        code, message, rest = cells[0].strip(), cells[1].strip(), " ".join(cells[2:])
        api.rows.append(Row("aliyun", "", code, _clean(message), _clean(rest), "submit", name, i + 1))
        api.last_line = i + 1
    receipt = Table(name, "§6.2 短信发送状态回执错误码", "aliyun", "receipt", b + 1, b + 1)
    for i in range(b + 1, c):
        cells = lines[i].split("\t")
        if len(cells) != 4 or cells[0] == "错误码归属":
            continue
        carrier, code, message, action = (x.strip() for x in cells)
        receipt.rows.append(Row("aliyun", carrier, code, _clean(message), _clean(action), "receipt", name, i + 1))
        receipt.last_line = i + 1
    return [api, receipt]


# ----------------------------------------------------------------------------------------------
# 001 KX ("全网短信")


def parse_kx(path: Path) -> list[Table]:
    lines, name = _lines(path), path.name
    tables = []
    for title, stage in (("12.1 提交短信过程中", "submit"), ("12.2 成功提交短信后", "receipt")):
        start = _find(lines, rf"^### {re.escape(title)}")
        t = Table(name, lines[start].lstrip("# ").strip(), "kx", stage, start + 1, start + 1)
        for i in range(start + 1, len(lines)):
            line = lines[i]
            if line.startswith("#"):
                break
            cells = line.split("\t")
            if len(cells) < 2 or cells[0].strip() == "错误码":
                continue
            code, desc = cells[0].strip(), cells[1].strip()
            action = cells[2].strip() if len(cells) > 2 else ""
            t.rows.append(Row("kx", "", code, _clean(desc), _clean(action), stage, name, i + 1))
            t.last_line = i + 1
        tables.append(t)
    return tables


# ----------------------------------------------------------------------------------------------
# 002 Tencent Cloud SMS (PDF text: space-separated cells, wrapped lines, page furniture)

# Tencent API 3.0 codes: one of the public families (公共错误码), optionally ".Detail"
_TC_FAMILIES = (
    "ActionOffline", "AuthFailure", "DryRunOperation", "FailedOperation", "InternalError",
    "InvalidAction", "InvalidParameter", "InvalidParameterValue", "InvalidRequest", "IpInBlacklist",
    "IpNotInWhitelist", "LimitExceeded", "MissingParameter", "NoSuchProduct", "NoSuchVersion",
    "RequestLimitExceeded", "RequestSizeLimitExceeded", "ResourceInUse", "ResourceInsufficient",
    "ResourceNotFound", "ResourceUnavailable", "ResponseSizeLimitExceeded", "ServiceUnavailable",
    "UnauthorizedOperation", "UnknownParameter", "UnsupportedOperation", "UnsupportedProtocol",
    "UnsupportedRegion",
)
_TC_API_CODE = re.compile(rf"^\s*((?:{'|'.join(_TC_FAMILIES)})(?:\.[A-Za-z0-9_]+)?)(?:\s+(\S.*))?$")
_TC_SEND_CODE = re.compile(r"^\s*(\d{4,5})(?:\s+(\S.*))?$")
_TC_RECEIPT = re.compile(r"^\s*(\S.*?) (三网|移动|联通|电信|广电|无效号码) (\S.*?)\s*$")
_TC_HEADER = re.compile(r"^\s*(错误码|错误代码) (错误描述|描述|说明|说明 处理措施|分类 说明)\s*$")
_TC_STOP = re.compile(r"^(\d+\.\s*\S|公共错误码$|业务错误码$|短信发送错误码$|回执状态错误码$|错误码列表$)")
_TC_CRUMB = re.compile(r"^(附录|接 描述|常 问|.*相关接口)$")
# where the action column of the 短信发送错误码 table starts (its cells are only space-separated)
_TC_ACTION = re.compile(
    r"^(请|可自行|可登录|可联系|如需|如有|您|出现概率|发送国|中国大陆和|短信长度|此 sdkappid|签名只能由|为避免|-$)"
)


def _tc_noise(lines: list[str]) -> set[int]:
    """Indices of page furniture: URLs, page titles with their date line, crumbs, page footers."""
    noise: set[int] = set()
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith(("http://", "https://")):
            noise.add(i)
        elif s.startswith("最近更新时间"):
            noise.add(i)
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            noise.add(j)  # the page title
            k = j - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            if k >= 0 and _TC_CRUMB.match(lines[k].strip()):
                noise.add(k)
        elif s.startswith("版权所有"):
            noise.add(i)
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            if lines[j].strip() == "短信":
                noise.add(j)
    return noise


def _tc_table(
    lines: list[str], noise: set[int], start: int, row_rx: re.Pattern[str], t: Table, strict: bool
) -> tuple[int, list[tuple[int, str, list[str]]]]:
    """(end index, rows as (line index, code, cell lines)) from `start` (after the first header).

    Inside the table every line that is no row, header or page furniture continues the row
    before it (PDF-wrapped cells). The table ends at a heading, or at a new PDF page (a line
    with leading space) that is neither a header nor a row. `strict`: continuations are errors.
    """
    rows: list[tuple[int, str, list[str]]] = []
    i = start
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s or i in noise:
            i += 1
            continue
        if _TC_HEADER.match(line):
            i += 1
            continue
        m = row_rx.match(line)
        awaiting = bool(rows) and len(rows[-1][2]) == 1 and row_rx.match(rows[-1][2][0]).group(2) is None
        if m and not awaiting:  # a code alone on its line is followed by its description, never a code
            rows.append((i, m.group(1), [line]))
            i += 1
            continue
        if line[0].isspace() or _TC_STOP.match(s):  # a new PDF page that is no table, or a heading
            break
        if strict or not rows:
            raise SystemExit(f"{t.seed_file}:{i + 1}: unexpected line in table {t.name}: {s!r}")
        rows[-1][2].append(line)
        i += 1
    return i, rows


def parse_tencent(path: Path) -> list[Table]:
    lines, name = _lines(path), path.name
    noise = _tc_noise(lines)
    tables: list[Table] = []
    interface = ""
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        m = re.match(r"^本接口 \((\w+)\)", s)
        if m:
            interface = m.group(1)
        kind = None
        if re.match(r"^(错误码|错误代码) 错误描述$", s):
            kind, tname, stage, header = "api", f"签名失败 (line {i + 1})", "api", i
        elif s == "6. 错误码":
            stage = "submit" if interface == "SendSms" else "api"
            header = _find(lines, _TC_HEADER.pattern, i)
            kind, tname = "api", f"6. 错误码 {interface}"
        elif s in ("公共错误码", "业务错误码", "短信发送错误码", "回执状态错误码"):
            ahead = [j for j in range(i + 1, min(i + 12, len(lines))) if lines[j].strip()][:4]
            found = [j for j in ahead if _TC_HEADER.match(lines[j])]  # the header, after a short lead-in
            if found:
                header, tname = found[0], s
                kind, stage = {
                    "公共错误码": ("api", "api"),
                    "业务错误码": ("api", "api"),
                    "短信发送错误码": ("send", "submit"),
                    "回执状态错误码": ("receipt", "receipt"),
                }[s]
        if kind is None:
            i += 1
            continue
        t = Table(name, tname, "tencent", stage, i + 1, i + 1)
        rx = {"api": _TC_API_CODE, "send": _TC_SEND_CODE, "receipt": _TC_RECEIPT}[kind]
        end, raw = _tc_table(lines, noise, header + 1, rx, t, strict=kind == "receipt")
        for idx, code, cell in raw:
            if kind == "receipt":
                m = _TC_RECEIPT.match(cell[0])
                carrier = m.group(2) if m.group(2) != "无效号码" else ""
                t.rows.append(Row("tencent", carrier, m.group(1).strip(), m.group(3).strip(), "", stage, name, idx + 1))
            elif kind == "api":
                m = _TC_API_CODE.match(cell[0])
                desc = _join([m.group(2) or "", *cell[1:]])
                t.rows.append(Row("tencent", "", code, desc, "", stage, name, idx + 1))
            else:
                desc, action = _tc_send_cells(cell)
                t.rows.append(Row("tencent", "", code, desc, action, stage, name, idx + 1))
        if t.rows:
            t.last_line = t.rows[-1].seed_line
            tables.append(t)
        i = max(end, i + 1)
    return tables


def _tc_send_cells(cell: list[str]) -> tuple[str, str]:
    """Split a 短信发送错误码 row into (说明, 处理措施); the cells are only separated by spaces."""
    first = _TC_SEND_CODE.match(cell[0]).group(2) or ""
    parts = [first] + [c.strip() for c in cell[1:]]
    desc: list[str] = []
    action: list[str] = []
    for n, p in enumerate(parts):
        if not p:
            continue
        if action:
            action.append(p)
            continue
        if n > 0 and desc and _TC_ACTION.match(p):
            action.append(p)
            continue
        # on one line: "说明 处理措施" -- the action starts at the first space before an action word
        words = p.split(" ")
        for w in range(1, len(words)):
            rest = " ".join(words[w:])
            if _TC_ACTION.match(rest):
                desc.append(" ".join(words[:w]))
                action.append(rest)
                break
        else:
            desc.append(p)
    return _join(desc), _join(action)


# ----------------------------------------------------------------------------------------------
# 003 CMPP gateway


_CMPP_TABLES = (
    ("登录过程中", "api"),
    ("提交短信过程中", "submit"),
    ("状态报告", "receipt"),
    ("推送报告给客户", "api"),
)


def parse_cmpp(path: Path) -> list[Table]:
    lines, name = _lines(path), path.name
    tables: list[Table] = []
    t: Table | None = None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if "\t" not in line and nxt.startswith("错误码"):
            stage = next(st for prefix, st in _CMPP_TABLES if line.startswith(prefix))
            t = Table(name, line.strip(), "cmpp", stage, i + 1, i + 1)
            tables.append(t)
            continue
        if t is None or line.startswith("错误码"):
            continue
        if "\t" not in line:  # a wrapped cell: continues the previous row's last column
            r = t.rows[-1]
            if r.action:
                r.action = _clean(r.action + " " + line)
            else:
                r.description = _clean(r.description + " " + line)
            continue
        cells = [c.strip() for c in line.split("\t")]
        code, desc = cells[0], cells[1] if len(cells) > 1 else ""
        action = cells[2] if len(cells) > 2 else ""
        t.rows.append(Row("cmpp", "", code, _clean(desc), _clean(action), t.stage, name, i + 1))
        t.last_line = i + 1
    return tables


# ----------------------------------------------------------------------------------------------
# 004 cross-provider map (markdown)


def _map_stage(title: str) -> str:
    if title.startswith("短信"):
        return "receipt"  # receipt codes seen in the field
    if title.startswith("语音"):
        return "receipt"  # the call's result status, reported after the call
    if title.startswith("alibaba.aliqin.fc.sms.num.query"):
        return "api"  # the query call's own errors
    return "submit"  # alidayu send calls: sms.num.send, voice/tts singlecall, doublecall


def parse_map(path: Path) -> list[Table]:
    lines, name = _lines(path), path.name
    tables: list[Table] = []
    t: Table | None = None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("##"):
            title = s.lstrip("#").strip()
            if i + 1 < len(lines) and lines[i + 1].startswith("|"):
                t = Table(name, title, "map", _map_stage(title), i + 1, i + 1)
                tables.append(t)
            else:
                t = None
            continue
        if t is None or not s.startswith("|"):
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if set("".join(cells)) <= set("- ") or cells[0] in ("序号", "错误码", "状态值"):
            continue
        if t.name.startswith("短信"):  # 序号 | 错误码 | 错误描述
            code, desc, action = cells[1], cells[2], ""
        elif t.name.startswith("语音"):  # 状态值 | 状态含义 | 错误描述 (detail)
            code = cells[0]
            detail = cells[2] if len(cells) > 2 else ""
            desc = cells[1] + (f"；{detail}" if detail and detail not in ("-", cells[1]) else "")
            action = ""
        else:  # 错误码 | 错误描述 | 解决方案
            code, desc, action = cells[0], cells[1], cells[2] if len(cells) > 2 else ""
        t.rows.append(Row("map", "", code, _clean(desc), _clean(action), t.stage, name, i + 1))
        t.last_line = i + 1
    return tables


# ----------------------------------------------------------------------------------------------
# build


def parse_tables(seeds: Path) -> list[Table]:
    """Every table of the seeds, in seed order, rows before de-duplication."""
    return (
        parse_aliyun(_seed(seeds, "000"))
        + parse_kx(_seed(seeds, "001"))
        + parse_tencent(_seed(seeds, "002"))
        + parse_cmpp(_seed(seeds, "003"))
        + parse_map(_seed(seeds, "004"))
    )


@dataclass
class Build:
    tables: list[Table]
    rows: list[dict]  # the CSV rows
    in_table: list[tuple[Table, Row]]  # dropped: key and description seen earlier in the same table
    meanings: list[tuple[Table, Row, Row]]  # kept: key seen earlier in the same table, another description (row, first)
    cross_table: list[tuple[Table, Row, Row]]  # dropped: key seen in an earlier table (dropped, kept)
    seeds: list[str]


def key(r: Row) -> tuple[str, str, str, str]:
    return (r.source, r.carrier, r.code, r.stage)


def build(seeds: Path) -> Build:
    tables = parse_tables(seeds)
    seen: dict[tuple, tuple[Table, Row]] = {}
    described: set[tuple] = set()
    rows: list[dict] = []
    in_table: list = []
    cross: list = []
    meanings: list = []
    for t in tables:
        for r in t.rows:
            k = key(r)
            if k in seen:
                first_t, first_r = seen[k]
                if first_t is not t:
                    cross.append((t, r, first_r))
                    continue
                if (*k, r.description) in described:
                    in_table.append((t, r))
                    continue
                meanings.append((t, r, first_r))
            else:
                seen[k] = (t, r)
            described.add((*k, r.description))
            cat = categorize(r.description, r.code, r.stage)
            rows.append({
                "source": r.source, "carrier": r.carrier, "code": r.code,
                "description": r.description, "action": r.action, "stage": r.stage,
                "failure_category": cat, "permanent": int(PERMANENT[cat]),
                "seed_file": r.seed_file, "seed_line": r.seed_line,
            })
    names = sorted(p.name for p in seeds.glob("00[0-4]_*.txt"))
    return Build(tables, rows, in_table, meanings, cross, names)


def render(b: Build) -> str:
    buf = io.StringIO()
    buf.write(f"# version: {VERSION}, built from {', '.join(b.seeds)} by scripts/build_error_codes.py\n")
    w = csv.DictWriter(buf, fieldnames=HEADER, lineterminator="\n")
    w.writeheader()
    w.writerows(b.rows)
    return buf.getvalue()


def stats(b: Build) -> str:
    out = ["rows per table (parsed / kept / dropped in-table / dropped cross-table):"]
    for t in b.tables:
        it = sum(1 for tt, _ in b.in_table if tt is t)
        ct = sum(1 for tt, _, _ in b.cross_table if tt is t)
        out.append(f"  {t.seed_file[:3]} {t.source:8} {t.stage:8} {t.name} [{t.first_line}-{t.last_line}]: "
                   f"{len(t.rows)} / {len(t.rows) - it - ct} / {it} / {ct}")
    out.append(f"total rows: {len(b.rows)}")
    out.append("rows per category:")
    counts = dict.fromkeys(CATEGORIES, 0)
    for r in b.rows:
        counts[r["failure_category"]] += 1
    for c in CATEGORIES:
        out.append(f"  {c:15} {counts[c]:5}  permanent={PERMANENT[c]}")
    out.append(f"in-table duplicates: {len(b.in_table)}")
    for t, r in b.in_table:
        out.append(f"  {r.seed_file[:3]}:{r.seed_line} {r.source} {r.carrier or '-'} {r.code} ({t.name})")
    out.append(f"further meanings (kept): {len(b.meanings)}")
    for t, r, first in b.meanings:
        out.append(f"  {r.seed_file[:3]}:{r.seed_line} {r.source} {r.carrier or '-'} {r.code} ({t.name}; first line "
                   f"{first.seed_line})")
    out.append(f"cross-table duplicates: {len(b.cross_table)}")
    for t, r, first in b.cross_table:
        out.append(f"  {r.seed_file[:3]}:{r.seed_line} {r.source} {r.stage} {r.code} ({t.name}; kept line {first.seed_line})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("seeds", nargs="?", type=Path, default=DEFAULT_SEEDS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--stats", action="store_true", help="print counts per table, per category and duplicates")
    ap.add_argument("--check", action="store_true", help="exit 1 if the CSV on disk differs from a rebuild")
    args = ap.parse_args(argv)
    b = build(args.seeds)
    text = render(b)
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{args.out} is stale; rerun scripts/build_error_codes.py")
        return 0 if same else 1
    if args.stats:
        print(stats(b))
        return 0
    args.out.write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    print(f"wrote {len(b.rows)} rows to {args.out} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
