"""sources/base/fields.py: the field readers every parser uses, the rejection reasons, the JSON
a record is dead-lettered as, and `collect` (a bad record costs itself, never its neighbours)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sms_analytics.sources.base.fields import (
    INTERNAL_ERROR,
    MAX_FIELD_CHARS,
    MAX_REASON_CHARS,
    BadBody,
    BadRecord,
    Parsed,
    as_list,
    as_records,
    collect,
    loads,
    obj,
    opt_str,
    raw_of,
    reason_of,
    req_bool,
    req_str,
    req_text,
    scalar,
)


def test_loads_takes_utf8_json_with_or_without_a_bom() -> None:
    assert loads(b'{"a": 1}') == {"a": 1}
    assert loads(b'\xef\xbb\xbf[1]') == [1]
    with pytest.raises(BadBody, match="not valid JSON"):
        loads(b"{nope")
    with pytest.raises(BadBody):
        loads(b'"\xff"')


def test_shapes() -> None:
    assert as_records({"a": 1}) == [{"a": 1}] and as_records([1, 2]) == [1, 2]
    with pytest.raises(BadBody, match="got str"):
        as_records("x")
    assert as_list([], "sends") == []
    with pytest.raises(BadBody, match="sends: expected a JSON array, got dict"):
        as_list({}, "sends")
    with pytest.raises(BadRecord, match="record: expected an object, got list"):
        obj([], "record")


def test_string_fields() -> None:
    rec: dict[str, Any] = {"id": " 42 ", "n": 7, "flag": True, "empty": "", "long": "x" * (MAX_FIELD_CHARS + 1)}
    assert req_str(rec, "id") == "42" and req_str(rec, "n") == "7"
    for name in ("missing", "empty"):
        with pytest.raises(BadRecord, match="missing field"):
            req_str(rec, name)
    with pytest.raises(BadRecord, match="must be a string, got int"):
        req_str(rec, "n", allow_number=False)
    with pytest.raises(BadRecord, match="must be a string, got bool"):
        req_str(rec, "flag")
    with pytest.raises(BadRecord, match="longer than"):
        req_str(rec, "long")
    assert opt_str(rec, "missing", "d") == "d" and opt_str(rec, "id") == "42"


def test_scalar_is_a_body_level_field() -> None:
    assert scalar(None, "Code", "OK") == "OK"
    assert scalar(" 0", "code") == "0" and scalar(" 0", "code", strip=False) == " 0"
    assert scalar(1.5, "fee") == "1.5"
    for bad in (True, [], {}):
        with pytest.raises(BadBody, match="must be a string or a number"):
            scalar(bad, "Code")


def test_text_and_bool_fields() -> None:
    assert req_text({"content": "  kept as sent "}, "content") == "  kept as sent "
    with pytest.raises(BadRecord):
        req_text({"content": 5}, "content")
    assert req_bool({"ok": True}, "ok") is True
    assert req_bool({"ok": "FALSE"}, "ok") is False
    with pytest.raises(BadRecord, match="must be a boolean"):
        req_bool({"ok": 1}, "ok")


def test_reason_of_is_bounded_and_encodable() -> None:
    assert reason_of(ValueError("bad phone")) == "bad phone"
    assert reason_of(KeyError()) == "KeyError"
    long = reason_of("x" * 1000)
    assert len(long) == MAX_REASON_CHARS and long.endswith("…")
    assert reason_of("\ud800 lone surrogate").encode("utf-8")


def test_raw_of_writes_any_depth() -> None:
    assert orjson.loads(raw_of({"a": [1, "b"]})) == {"a": [1, "b"]}
    deep: Any = 1
    for _ in range(400):  # deeper than orjson writes
        deep = [deep]
    raw = raw_of(deep)
    assert raw.startswith(b"[" * 400 + b"1") and raw.endswith(b"]" * 400)


def test_collect_rejects_a_bad_record_and_goes_on() -> None:
    def convert(record: Any) -> list[Any]:
        if record == "bad":
            raise BadRecord("missing field 'x'")
        if record == "bug":
            raise ZeroDivisionError("parser bug")
        return [f"event-{record}", f"event-{record}-2"]

    parsed = collect(["a", "bad", "bug", "b"], convert)
    assert parsed.events == ["event-a", "event-a-2", "event-b", "event-b-2"]
    assert [(r.index, r.reason, r.raw) for r in parsed.rejected] == [
        (1, "missing field 'x'", b'"bad"'), (2, f"{INTERNAL_ERROR} (ZeroDivisionError)", b'"bug"')]
    assert parsed.origins == [(0, "a"), (0, "a"), (3, "b"), (3, "b")]
    with pytest.raises(BadBody):
        collect([1], lambda r: (_ for _ in ()).throw(BadBody("whole body")))
    into = Parsed()
    assert collect([1, 2], lambda i, r: [i * 10 + r], into, with_index=True) is into
    assert into.events == [1, 12]


def test_identity_fields_carry_the_region_of_the_segment_not_the_number() -> None:
    from sms_analytics.model.events import Delivery, SendEvent, decode_message_event, encode
    from sms_analytics.model.phone import PhoneHasher
    from sms_analytics.sources.base.fields import Identities

    ids = Identities(PhoneHasher(b"k" * 32))
    fields = ids.identity("aliyun", "m1", ids.phone("13500000000"))
    assert (fields["province"], fields["city"]) == ("广东", "广州")
    assert (ids.fields(ids.phone("+1 202 555 0100"))["province"], ids.fields(ids.phone("+12025550100"))["city"]) == ("", "")
    send = SendEvent(**fields, sent_at_ms=1, received_at_ms=1)
    assert decode_message_event(encode(send)).province == "广东"
    written_before = {k: v for k, v in orjson.loads(encode(send)).items() if k not in ("province", "city")}
    assert decode_message_event(orjson.dumps(written_before)).province == ""  # a record on the topic still decodes
    assert Delivery(**{k: fields[k] for k in Delivery.__struct_fields__ if k in fields}).city == "广州"
