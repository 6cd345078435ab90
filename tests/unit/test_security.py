"""Secrets and personal data: no secret in the repository or docker-compose.yml, credentials only
from the environment or an env file, provider credentials and raw phone numbers never logged, and
raw numbers never stored in ClickHouse (SMS_STORE_RAW_PHONE=false)."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from sms_analytics.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# --- no secret in the repository ---------------------------------------------------------------------------

# Credential formats that are never legitimate in a repository (in tests/ too, except a password in a
# URL: the tests use fixed fakes there).
FORMATS = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    "Alibaba Cloud AccessKey ID": re.compile(r"\bLTAI[0-9A-Za-z]{12,30}\b"),
    "Tencent Cloud SecretId": re.compile(r"\bAKID[0-9A-Za-z]{32}\b"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[0-9A-Za-z]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[0-9A-Za-z-]{10,}"),
    "Grafana service account token": re.compile(r"\bglsa_[0-9A-Za-z]{32}_[0-9a-f]{8}\b"),
    "JWT": re.compile(r"\beyJ[0-9A-Za-z_-]{10,}\.eyJ[0-9A-Za-z_-]{10,}\.[0-9A-Za-z_-]{10,}"),
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"`]+:([^@\s/'\"`]+)@"),
}
# `name = "literal"` for a secret-looking name: checked outside tests/ (the tests use fixed fakes).
ASSIGNMENT = re.compile(
    r"(?i)\b[\w-]*(?:secret|password|passwd|token|api_?key|access_?key|hash_key)[\w-]*[\"']?\s*[:=]\s*[\"']([^\"'\s]{8,})[\"']")
# A value is a fake when it says so, or a reference/placeholder when it is one.
FAKE = re.compile(r"(?i)test|demo|example|simulator|fake|standin|dummy|bench|placeholder|not-a-secret|changeme|xxx|\*\*\*|…")
REFERENCE = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*|^\$\(|^<[^>]+>$|^%\(|^\{[a-z_]+\}$")


def repository_files() -> list[Path]:
    """Tracked files and new ones not ignored (so a secret is caught before it is committed)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return [ROOT / p for p in sorted(set(out.decode().split("\0"))) if p and (ROOT / p).is_file()]


def text_of(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def findings(path: Path, text: str) -> list[str]:
    relative = path.relative_to(ROOT).as_posix()
    found = []
    in_tests = relative.startswith("tests/")
    for what, pattern in FORMATS.items():
        if in_tests and what == "password in a URL":
            continue
        for match in pattern.finditer(text):
            value = match.group(1) if pattern.groups else match.group(0)
            if what == "password in a URL" and (REFERENCE.match(value) or FAKE.search(value) or value in ("pass", "password")):
                continue
            if what != "private key" and FAKE.search(match.group(0)):
                continue
            found.append(f"{relative}: {what}: {match.group(0)[:40]}")
    if not in_tests:
        for match in ASSIGNMENT.finditer(text):
            value = match.group(1)
            if not (FAKE.search(value) or REFERENCE.match(value)):
                found.append(f"{relative}: secret-looking assignment: {match.group(0)[:60]}")
    return found


def test_the_scanner_finds_what_it_should() -> None:
    samples = {  # assembled, so this file does not hold them literally
        "-----BEGIN OPENSSH " + "PRIVATE KEY-----": 1, "LTAI" + "5tQ3abcDEFgh12345678": 1,
        "AKID" + "a1B2c3D4" * 4: 1, "http://sms:" + "s3cr3t-pw@clickhouse:8123": 1, "http://sms:${PW}@ch:8123": 0,
        "api_key = \"q8Zr02LmVx91\"": 1, "api_key = \"${SMS_KX_APIKEY}\"": 0, "password: 'test-pass-123'": 0,
        "AKIDsimulatorTESTsecretid0000000000": 0,
    }
    for text, count in samples.items():
        assert len(findings(ROOT / "src" / "x.py", text)) == count, text


def test_no_secret_in_the_repository() -> None:
    files = repository_files()
    assert len(files) > 50
    problems = [p for f in files if (t := text_of(f)) is not None for p in findings(f, t)]
    assert problems == []
    names = {f.relative_to(ROOT).as_posix() for f in files}
    assert not [n for n in names if re.search(r"(^|/)\.env($|\.)|\.pem$|\.key$|(^|/)id_(rsa|ed25519)", n)], names
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|APIKEY|API_KEY|HASH_KEY|ACCESS_KEY")
WHOLE_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def test_compose_takes_every_secret_from_the_environment() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    checked = 0
    for name, service in compose["services"].items():
        assert "env_file" not in service, f"{name}: env_file would read a file next to the compose file"
        for key, value in _environment(service).items():
            for password in FORMATS["password in a URL"].findall(value):
                assert WHOLE_REFERENCE.fullmatch(password), f"{name}.{key}: a literal password in a URL"
            if SECRET_NAME.search(key):
                checked += 1
                ref = WHOLE_REFERENCE.fullmatch(value)
                assert value == "" or ref, f"{name}.{key} = {value!r}: not a ${{VAR}} reference"
                if ref and ref["op"] in ("-", ":-"):
                    assert ref["arg"] == "", f"{name}.{key}: a default value for a secret"
    assert checked >= 5


SECRET_FIELDS = ("sms_callback_token", "sms_phone_hash_key", "sms_kx_apikey", "sms_tencent_secret_key",
                 "sms_aliyun_access_key_secret")


def test_secret_settings_are_secret_strings_from_the_environment_or_an_env_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = Settings.model_fields
    secret_like = {n for n in fields if re.search(r"token|secret_key|apikey|key_secret|password|hash_key", n)}
    assert secret_like >= set(SECRET_FIELDS)
    for name in secret_like:  # a credential setting is a SecretStr without a default
        assert fields[name].annotation == SecretStr | None and fields[name].default is None, name
    values = {name: f"{name}-{uuid.uuid4().hex}" for name in SECRET_FIELDS}
    for name, value in values.items():
        monkeypatch.setenv(name.upper(), value)
    from_env = Settings(_env_file=None)
    for name in SECRET_FIELDS:
        monkeypatch.delenv(name.upper())
    (tmp_path / ".env").write_text("".join(f"{n.upper()}={v}\n" for n, v in values.items()))
    from_file = Settings(_env_file=tmp_path / ".env")
    for settings in (from_env, from_file):
        assert {n: getattr(settings, n).get_secret_value() for n in SECRET_FIELDS} == values
        shown = repr(settings) + str(settings.model_dump()) + settings.model_dump_json()
        assert not [v for v in values.values() if v in shown]


# --- credentials and raw numbers never logged (the whole pipeline, as `sms-analytics up`) ------------------


# --- raw numbers never stored in the warehouse -----------------------------------------------------------

