"""Business names of the providers' templates, from the CSV file named by SMS_TEMPLATE_NAMES, into
`sms.template_names` (behind the dictionary `sms.template_name_dict`); the contents are replaced at
every start. Each provider registers its own template ids (Alibaba `SMS_153055065`, Tencent
`449739`, KX none), so the dashboards compare providers on the name they share ("login code").

The file (UTF-8, a header line first; blank lines and lines starting with `#` are skipped; one
record per line, fields quoted as CSV when they hold a comma):

    provider,template,sign,name
    aliyun,SMS_153055065,,login code
    tencent,449739,,login code
    kx,,鲜果园,login code

- `provider`, `name` are required; `sign` and `type` are optional columns. Extra columns are an error.
- `type` (verification, notification, marketing, international, other; empty: none) sets the template's
  type over the one its provider's metadata API gives (`sms.template_info_dict`): Tencent's template list
  has no type, so its templates are `other` unless a row types them. A type belongs to a template, so a
  row with a sign cannot give one.
- The names the metadata feeds pull (sms.templates) fill in for every template without a sign-less row.
- `sign` empty matches any sign; a row with a sign matches that sign only and wins over the
  template's row without a sign. KX messages have no template id (the warehouse has their sign,
  taken from the 【…】 of the content, not the content), so a KX row gives `template` empty and the
  `sign`. A row needs a template or a sign.
- A (provider, template, sign) given twice is an error, as is any malformed line: the message names
  the file and the line.
- Messages no row matches keep their raw template id as their name.

On a cluster (SMS_CLICKHOUSE_CLUSTER, sinks/cluster.py) the table has a replica on every node and each
node's dictionary reads its own: a start truncates and reloads it (replicated to every node), then
reloads every node's dictionary once every replica has the rows (Warehouse.reload_dictionary).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from sms_analytics.model.events import TEMPLATE_TYPES
from sms_analytics.sinks.warehouse import Warehouse

log = structlog.get_logger(__name__)

TABLE = "sms.template_names"
DICTIONARY = "sms.template_name_dict"
DICTIONARIES = (DICTIONARY, "sms.template_info_dict")  # both read the table (sinks/dictionaries.sql)
COLUMNS = ("provider", "template", "sign", "name", "type", "source", "line")
REQUIRED = ("provider", "template", "name")
OPTIONAL = ("sign", "type")


class TemplateNamesError(ValueError):
    """A mapping file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class TemplateName:
    provider: str
    template: str
    sign: str
    name: str
    line: int
    type: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.provider, self.template, self.sign


def parse(text: str, source: str = "<template names>") -> list[TemplateName]:
    """The rows of a mapping file's text; TemplateNamesError on the first bad line."""
    header: list[str] | None = None
    out: list[TemplateName] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        where = f"{source}, line {number}"
        try:
            fields = [f.strip() for f in next(csv.reader([raw], strict=True))]
        except csv.Error as exc:
            raise TemplateNamesError(f"{where}: not a CSV record ({exc}): {raw!r}") from None
        if header is None:
            header = [f.lower() for f in fields]
            unknown = [f for f in header if f not in REQUIRED + OPTIONAL]
            missing = [f for f in REQUIRED if f not in header]
            if unknown or missing or len(set(header)) != len(header):
                raise TemplateNamesError(
                    f"{where}: the header must name the columns provider, template, name and optionally sign, type "
                    f"(got {raw!r}" + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                    + (f"; missing: {', '.join(missing)}" if missing else "") + ")")
            continue
        if len(fields) != len(header):
            raise TemplateNamesError(f"{where}: {len(fields)} fields, the header has {len(header)}: {raw!r}")
        row = dict(zip(header, fields, strict=True))
        entry = TemplateName(row["provider"], row["template"], row.get("sign", ""), row["name"], number,
                             row.get("type", "").lower())
        if not entry.provider:
            raise TemplateNamesError(f"{where}: provider is empty: {raw!r}")
        if not entry.name:
            raise TemplateNamesError(f"{where}: name is empty: {raw!r}")
        if not entry.template and not entry.sign:
            raise TemplateNamesError(f"{where}: needs a template or a sign (KX: the sign): {raw!r}")
        if entry.type and entry.type not in TEMPLATE_TYPES:
            raise TemplateNamesError(f"{where}: type {entry.type!r} is none of {', '.join(TEMPLATE_TYPES)}: {raw!r}")
        if entry.type and entry.sign:
            raise TemplateNamesError(f"{where}: a type belongs to a template: leave the sign empty: {raw!r}")
        if entry.key in seen:
            raise TemplateNamesError(
                f"{where}: duplicate of line {seen[entry.key]} (provider {entry.provider!r}, "
                f"template {entry.template!r}, sign {entry.sign!r})")
        seen[entry.key] = number
        out.append(entry)
    if header is None:
        raise TemplateNamesError(f"{source}: no header line (provider,template,sign,name)")
    return out


def read(path: Path | str) -> list[TemplateName]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateNamesError(f"{path}: cannot read the template names ({exc})") from None
    return parse(text, str(path))


def name_of(mapping: Iterable[TemplateName], provider: str, template: str, sign: str) -> str:
    """The name a message gets (what the dashboards compute with the dictionary): the row for its
    sign, else the template's row without a sign, else its raw template."""
    by_key = {m.key: m.name for m in mapping}
    return by_key.get((provider, template, sign)) or by_key.get((provider, template, "")) or template


def load(warehouse: Warehouse, path: Path | str | None) -> int:
    """Replace the warehouse's mapping with the file's rows (none when `path` is None); the number
    loaded. The file is checked before anything is replaced."""
    rows = read(path) if path is not None else []
    warehouse.command(f"TRUNCATE TABLE {TABLE}")
    if rows:
        warehouse.insert(TABLE, [[r.provider, r.template, r.sign, r.name, r.type, str(path), r.line] for r in rows],
                         COLUMNS, warehouse.reload_token())
    for dictionary in DICTIONARIES:
        warehouse.reload_dictionary(dictionary, TABLE)
    log.info("template_names.loaded", path=str(path) if path is not None else None, rows=len(rows))
    return len(rows)
