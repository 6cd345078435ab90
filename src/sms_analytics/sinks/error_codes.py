"""Loads the error-code knowledge base into the warehouse: the tables as documented
(`sms.error_codes`) and the pipeline's resolved lookup (`sms.error_code_lookup`, behind the
dictionary `sms.error_code_dict`). Reloaded only when the packaged file's version changes.

A code with several meanings (model/knowledge.py) has a row for each in `sms.error_codes`, told apart
by seed_line (the table is a plain MergeTree: nothing folds them), so a query over the documents sees
them all, as `sms-analytics explain` does. `sms.error_code_lookup` keeps one row per (provider,
carrier, code, stage): the first meaning in seed order, which is what KnowledgeBase.lookup gives the
stream, so the dictionary and the deliveries' failure_category never disagree, and the dictionary's
key keeps a single value.

On a cluster (SMS_CLICKHOUSE_CLUSTER, sinks/cluster.py) both tables have a replica on every node, so
each node's dictionary reads its own: the process that finds another version truncates and reloads
them on its node (TRUNCATE and the inserts of a replicated table reach every replica), then waits for
every node's replica to have the rows and reloads every node's dictionary (Warehouse.reload_dictionary).
Processes starting together may both reload; the dictionary's key folds a doubled row, and the count
check reloads again at the next start."""

from __future__ import annotations

import hashlib
from importlib import resources

import structlog

from sms_analytics.model.knowledge import SHARED_ORDER, KnowledgeBase
from sms_analytics.model.phone import CARRIERS
from sms_analytics.sinks.warehouse import Warehouse

log = structlog.get_logger(__name__)

CODE_COLUMNS = ("source", "carrier", "code", "stage", "description", "action", "failure_category", "permanent",
                "seed_file", "seed_line", "kb_version")
LOOKUP_COLUMNS = ("provider", "carrier", "code", "stage", "source", "source_carrier", "description", "action",
                  "failure_category", "permanent", "kb_version")


def kb_version() -> str:
    raw = (resources.files("sms_analytics.model") / "error_codes.csv").read_bytes()
    return hashlib.sha1(raw).hexdigest()[:12]


def lookup_rows(kb: KnowledgeBase, version: str) -> list[list[object]]:
    """Every exact code a provider can resolve, for each of our carriers and both stages."""
    out: list[list[object]] = []
    for provider, shared in SHARED_ORDER.items():
        sources = {provider, *shared}
        codes = sorted({e.code for e in kb.rows() if e.source in sources and "*" not in e.code and "NNNN" not in e.code})
        for carrier in CARRIERS:
            for stage in ("receipt", "submit"):
                for code in codes:
                    e = kb.lookup(provider, code, carrier, stage)
                    if e is not None:
                        out.append([provider, carrier, code, stage, e.source, e.carrier, e.description, e.action,
                                    e.failure_category, e.permanent, version])
    return out


def load(warehouse: Warehouse) -> bool:
    """Load the knowledge base if the warehouse holds another version; True if it loaded."""
    kb, version = KnowledgeBase.load(), kb_version()
    _, rows = warehouse.query(f"SELECT count() FROM sms.error_codes WHERE kb_version = '{version}'")
    if rows[0][0] == len(kb):
        return False
    warehouse.command("TRUNCATE TABLE sms.error_codes")
    warehouse.command("TRUNCATE TABLE sms.error_code_lookup")
    warehouse.insert("sms.error_codes", [
        [e.source, e.carrier, e.code, e.stage, e.description, e.action, e.failure_category, e.permanent,
         e.seed_file, e.seed_line, version] for e in kb.rows()], CODE_COLUMNS, warehouse.reload_token())
    lookup = lookup_rows(kb, version)
    warehouse.insert("sms.error_code_lookup", lookup, LOOKUP_COLUMNS, warehouse.reload_token())
    warehouse.reload_dictionary("sms.error_code_dict", "sms.error_code_lookup")
    log.info("error_codes.loaded", version=version, codes=len(kb), lookup_rows=len(lookup))
    return True
