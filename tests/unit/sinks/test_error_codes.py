"""sinks/error_codes.py without a warehouse: the knowledge base's version and the lookup rows it loads."""

from __future__ import annotations

import hashlib
from importlib import resources

from sms_analytics.model.knowledge import SHARED_ORDER, KnowledgeBase
from sms_analytics.model.phone import CARRIERS
from sms_analytics.sinks.error_codes import LOOKUP_COLUMNS, kb_version, lookup_rows


def test_kb_version_is_the_packaged_csvs_hash() -> None:
    raw = (resources.files("sms_analytics.model") / "error_codes.csv").read_bytes()
    assert kb_version() == hashlib.sha1(raw).hexdigest()[:12]
    assert kb_version() == kb_version()


def test_lookup_rows_are_what_the_knowledge_base_resolves() -> None:
    kb = KnowledgeBase.load()
    rows = lookup_rows(kb, "v1")
    assert rows and all(len(r) == len(LOOKUP_COLUMNS) for r in rows)
    named = [dict(zip(LOOKUP_COLUMNS, r, strict=False)) for r in rows]
    assert {r["provider"] for r in named} == set(SHARED_ORDER)
    assert {r["carrier"] for r in named} <= set(CARRIERS)
    assert {r["stage"] for r in named} <= {"receipt", "submit"}
    assert {r["kb_version"] for r in named} == {"v1"}
    assert not any("*" in str(r["code"]) or "NNNN" in str(r["code"]) for r in named)  # exact codes only
    keys = [(r["provider"], r["carrier"], r["code"], r["stage"]) for r in named]
    assert len(keys) == len(set(keys))
    for r in named[:: max(1, len(named) // 50)]:  # each row is the lookup's answer
        e = kb.lookup(r["provider"], r["code"], r["carrier"], r["stage"])
        assert e is not None
        assert (e.source, e.description, e.failure_category, e.permanent) == \
            (r["source"], r["description"], r["failure_category"], r["permanent"])
