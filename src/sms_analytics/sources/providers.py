"""The registered providers, one line each. A provider is a package beside `base/` (its parsers,
client and feeds, `base/provider.py` says what it implements); the receiver's endpoints
(`/v1/sends/<name>`, `/callbacks/<name>/<path>`) and the pull feeds follow from this list."""

from __future__ import annotations

from sms_analytics.sources.aliyun.parsers import Aliyun
from sms_analytics.sources.base.provider import Provider
from sms_analytics.sources.kx.parsers import Kx
from sms_analytics.sources.tencent.parsers import Tencent

REGISTERED: tuple[type[Provider], ...] = (
    Aliyun,
    Tencent,
    Kx,
)
NAMES: tuple[str, ...] = tuple(provider.name for provider in REGISTERED)
