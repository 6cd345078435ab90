"""sources.providers: the registry matches model.providers.PROVIDERS; each provider declares its
callbacks (receipts and replies) and a feeds module with a `build`."""

from __future__ import annotations

import importlib

import pytest

from sms_analytics.model.providers import PROVIDERS
from sms_analytics.sources import providers
from sms_analytics.sources.base.provider import Provider


def test_names_equal_model_providers():
    assert providers.NAMES == PROVIDERS
    assert providers.NAMES == ("aliyun", "tencent", "kx")


def test_registered_are_providers():
    assert all(issubclass(p, Provider) for p in providers.REGISTERED)
    assert len(set(providers.NAMES)) == len(providers.NAMES)


@pytest.mark.parametrize("name, callbacks", [
    ("aliyun", {"sms-report": "receipts", "sms-up": "replies"}),
    ("tencent", {"status": "receipts", "reply": "replies"}),
    ("kx", {"report": "receipts", "mo": "replies"}),
])
def test_callbacks_declared(name, callbacks):
    provider = dict(zip(providers.NAMES, providers.REGISTERED, strict=True))[name]
    assert dict(provider.callbacks) == callbacks
    assert sorted(provider.callbacks.values()) == ["receipts", "replies"]


@pytest.mark.parametrize("provider", providers.REGISTERED, ids=providers.NAMES)
def test_feeds_module_has_build(provider):
    assert provider.feeds == f"sms_analytics.sources.{provider.name}.feeds"
    assert callable(importlib.import_module(provider.feeds).build)
