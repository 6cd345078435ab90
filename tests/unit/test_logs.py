"""logs.configure: the level it sets, the renderer it picks, the noisy loggers it quiets."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from sms_analytics import logs


@pytest.fixture(autouse=True)
def _restore():
    yield
    structlog.reset_defaults()
    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(logging.NOTSET)


def test_json_lines_on_stderr(capsys):
    logs.configure("INFO", json=True)
    structlog.get_logger().info("hello", provider="aliyun")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    doc = json.loads(line)
    assert doc["event"] == "hello"
    assert doc["provider"] == "aliyun"
    assert doc["level"] == "info"
    assert doc["timestamp"].endswith("Z")


def test_level_filters_below(capsys):
    logs.configure("warning", json=True)
    log = structlog.get_logger()
    log.info("quiet")
    log.warning("loud")
    err = capsys.readouterr().err
    assert "quiet" not in err
    assert "loud" in err


def test_unknown_level_falls_back_to_info(capsys):
    logs.configure("NOT-A-LEVEL", json=True)
    log = structlog.get_logger()
    log.debug("hidden")
    log.info("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "shown" in err


def test_console_renderer_is_key_value(capsys):
    logs.configure("INFO", json=False)
    structlog.get_logger().info("plain", count=3)
    err = capsys.readouterr().err
    assert "plain" in err
    assert "count=3" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.strip().splitlines()[-1])


@pytest.mark.parametrize("level, expected", [("DEBUG", logging.WARNING), ("ERROR", logging.ERROR)])
def test_noisy_libraries_at_least_warning(level, expected):
    logs.configure(level)
    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        assert logging.getLogger(noisy).level == expected
