"""settings.py: values as the environment writes them, the checks made at start, and the parts built
from the settings (warehouse URL, compensation policy, tokens)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sms_analytics.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_durations_in_seconds_or_iso8601() -> None:
    s = settings(sms_compensate_after="600", sms_compensate_interval="PT30M", sms_expire_after="259200")
    assert s.sms_compensate_after == timedelta(minutes=10) and s.sms_compensate_interval == timedelta(minutes=30)
    policy = s.compensation
    assert (policy.after_ms, policy.interval_ms, policy.forget_after_ms) == (600_000, 1_800_000, 259_200_000)


def test_the_warehouse_url_defaults_to_chdb_in_the_data_dir(tmp_path: Path) -> None:
    assert settings(sms_data_dir=tmp_path).warehouse_url == f"chdb:///{tmp_path.resolve() / 'warehouse'}"
    assert settings(clickhouse_url="http://u:p@ch:8123").warehouse_url == "http://u:p@ch:8123"


@pytest.mark.parametrize("field, value, says", [
    ("kafka_bootstrap_servers", "broker", "host:port"),
    ("kafka_bootstrap_servers", "a:9092,b:99999", "host:port"),
    ("clickhouse_url", "mysql://db", "chdb:///path"),
    ("clickhouse_url", "http://u:p#1@ch:8123", "percent-encoded"),
    ("sms_phone_hash_key", "short", "at least"),
])
def test_invalid_values_are_refused_with_what_is_expected(field: str, value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(**{field: value})


def test_retention_must_outlive_expiry_and_rollups_outlive_messages() -> None:
    with pytest.raises(ValidationError, match="SMS_ROLLUP_RETENTION_DAYS must be more"):
        settings(sms_retention_days=30, sms_rollup_retention_days=30)
    with pytest.raises(ValidationError, match="at least a day longer than SMS_EXPIRE_AFTER"):
        settings(sms_retention_days=3, sms_rollup_retention_days=400, sms_expire_after=timedelta(days=3))
    with pytest.raises(ValidationError, match="needs a ClickHouse server"):
        settings(sms_clickhouse_cluster="c1")


def test_tokens_are_secret_and_unset_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMS_QUERY_TOKEN", raising=False)
    s = settings(sms_query_token="q-token", sms_callback_token="c-token")
    assert s.query_token == "q-token" and s.callback_token == "c-token"
    assert "q-token" not in repr(s)
    assert settings().query_token is None
