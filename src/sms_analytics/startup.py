"""Start-up: the first connection to the broker and to the warehouse, waited for with bounded
exponential backoff (SMS_STARTUP_WAIT_SECONDS; sms_analytics.retrying, on tenacity), and the one line a user gets when it,
or a setting, fails: which setting, which address (without credentials), what went wrong.

Only the start-up is covered: once a process runs, its own retries (the receiver's publisher, the
sink's writes, the embedded broker's keeper) take over. Invalid settings are never waited for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from aiokafka.errors import KafkaError
from clickhouse_connect.driver.exceptions import Error as ClickHouseError
from pydantic import SecretStr, ValidationError
from tenacity import (
    AsyncRetrying,
    BaseRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
)

from sms_analytics.retrying import Backoff
from sms_analytics.settings import Settings
from sms_analytics.sinks.warehouse import WarehouseBusy
from sms_analytics.urls import redact, secrets_of

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=BaseRetrying)
EXIT_CODE = 2
BACKOFF_FIRST = 0.5  # seconds before the second attempt; doubled each time, at most BACKOFF_MAX
BACKOFF_MAX = 8.0
BACKOFF = Backoff(first=BACKOFF_FIRST, cap=BACKOFF_MAX)
TRANSIENT = (OSError, TimeoutError, asyncio.TimeoutError, KafkaError, ClickHouseError, WarehouseBusy)


class StartupFailed(Exception):
    """A start-up error shown as one line, and the process exits with code 2."""

    def __init__(self, setting: str, address: str, cause: str) -> None:
        self.setting, self.address, self.cause = setting, address, cause
        super().__init__(self.line())

    def line(self) -> str:
        where = f"{self.setting}={self.address}" if self.address else self.setting
        return f"error: {where}: {self.cause}"


class SettingInvalid(StartupFailed):
    """A setting that cannot work: failed at once, never waited for."""


@dataclass(frozen=True)
class Target:
    """What a start-up waits for: the setting that names it, its address as shown, and what it is."""

    setting: str
    address: str  # without credentials
    what: str
    secrets: tuple[str, ...] = ()  # scrubbed from every cause

    def failed(self, exc: BaseException, attempts: int, seconds: float) -> StartupFailed:
        waited = f" (after {attempts} attempts in {seconds:.1f} s)" if attempts > 1 else ""
        verb = "cannot be opened" if isinstance(exc, WarehouseBusy) else "cannot be reached"
        return StartupFailed(self.setting, self.address, f"{self.what} {verb}: {self.cause(exc)}{waited}")

    def cause(self, exc: BaseException) -> str:
        return scrub(describe(exc, self.address), self.secrets)


def kafka(settings: Settings) -> Target:
    return Target("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers or "", "the Kafka broker")


def warehouse(settings: Settings, url: str | None = None, setting: str | None = None) -> Target:
    """The warehouse: CLICKHOUSE_URL, or the embedded chDB path under SMS_DATA_DIR (or `setting`, e.g. --url)."""
    url = url or settings.warehouse_url
    name = setting or ("CLICKHOUSE_URL" if settings.clickhouse_url else "SMS_DATA_DIR")
    return Target(name, redact(url), "the warehouse", tuple(secrets_of(url)))


# --- waiting ------------------------------------------------------------------------------------------

def wait_sync(target: Target, attempt: Callable[[], T], seconds: float) -> T:
    """`attempt()` until it succeeds or `seconds` have passed; then StartupFailed."""
    retrying = _retrying(Retrying, target, seconds)
    try:
        with _quiet_clients():
            return retrying(attempt)
    except TRANSIENT as exc:
        raise target.failed(exc, retrying.statistics.get("attempt_number", 1), _elapsed(retrying)) from exc


async def wait_async(target: Target, attempt: Callable[[], Awaitable[T]], seconds: float) -> T:
    """`await attempt()` until it succeeds or `seconds` have passed; then StartupFailed."""
    retrying = _retrying(AsyncRetrying, target, seconds)

    async def call() -> T:
        return await attempt()

    try:
        with _quiet_clients():
            return await retrying(call)
    except TRANSIENT as exc:
        raise target.failed(exc, retrying.statistics.get("attempt_number", 1), _elapsed(retrying)) from exc


def _retrying(kind: type[R], target: Target, seconds: float) -> R:
    """Bounded exponential backoff (BACKOFF_FIRST doubling up to BACKOFF_MAX), for `seconds` in all:
    the last pause ends at the deadline, with one last attempt there. Only TRANSIENT errors are retried."""
    backoff = BACKOFF.wait()

    def pause(state: RetryCallState) -> float:
        left = state.start_time + seconds - time.monotonic()
        return max(0.0, min(backoff(state), left + 0.05))

    return kind(stop=stop_after_delay(seconds), wait=pause, retry=retry_if_exception_type(TRANSIENT),
                before_sleep=lambda state: _log_attempt(target, seconds, state), reraise=True)


def _log_attempt(target: Target, seconds: float, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("startup.waiting", setting=target.setting, address=target.address, attempt=state.attempt_number,
                error=target.cause(exc) if exc else None, retry_in=round(state.upcoming_sleep, 2),
                waited=round(time.monotonic() - state.start_time, 1), wait=seconds)


def _elapsed(retrying: Retrying | AsyncRetrying) -> float:
    return float(retrying.statistics.get("delay_since_first_attempt", 0.0))


QUIET = ("aiokafka", "urllib3", "clickhouse_connect")  # their own lines on each refused connection


@contextmanager
def _quiet_clients() -> Iterator[None]:
    """The clients log every refused connection: each attempt is logged once, here, instead."""
    loggers = [logging.getLogger(name) for name in QUIET]
    levels = [each.level for each in loggers]
    if not debugging():
        for each in loggers:
            each.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)


# --- what went wrong, in a few words ------------------------------------------------------------------

def describe(exc: BaseException, address: str = "") -> str:
    """The cause of a failed connection: the operating system's reason where one is known."""
    if isinstance(exc, WarehouseBusy):
        return str(exc)
    reason = _os_reason(exc)
    if reason is None and isinstance(exc, KafkaError):
        reason = _tcp_reason(address)
    name = type(exc).__name__
    return f"{reason} ({name})" if reason else f"{name}: {_first_line(str(exc).removeprefix(f'{name}: '))}"


def _os_reason(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        current = current.__cause__ or current.__context__
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return match[1].strip().lower() if match else None


def _tcp_reason(servers: str) -> str | None:
    """aiokafka says only "Unable to bootstrap": ask the first server's address directly."""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return "it accepts connections but does not answer as a Kafka broker"
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()
    except ValueError:
        return None


def _first_line(text: str, limit: int = 240) -> str:
    text = re.sub(r"\s+", " ", text.strip().splitlines()[0] if text.strip() else "")
    text = re.sub(r"query_id=[0-9a-f-]+", "query_id=…", text)
    text = re.sub(r" at 0x[0-9a-f]+|, <AddressFamily\.\w+: \d+>", "", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# --- settings -----------------------------------------------------------------------------------------

def settings(**given: Any) -> Settings:
    """The settings (`given`: values of the command line's options, over the environment's), or
    SettingInvalid naming each setting that is wrong (and its value, unless secret)."""
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise invalid(exc) from exc


def invalid(exc: ValidationError) -> SettingInvalid:
    errors = [_setting_error(e) for e in exc.errors(include_url=False)]
    if len(errors) == 1:
        return SettingInvalid(*errors[0])
    names = ", ".join(dict.fromkeys(name for name, _, _ in errors))
    return SettingInvalid(names, "", "; ".join(f"{n}={v}: {c}" if v else f"{n}: {c}" for n, v, c in errors))


def _setting_error(error: Mapping[str, Any]) -> tuple[str, str, str]:
    """(SETTING, its value as shown, what is wrong); a check of several settings names them itself."""
    field = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    info = Settings.model_fields.get(field)
    secret = info is not None and SecretStr in (info.annotation, *getattr(info.annotation, "__args__", ()))
    shown = _shown(redact(str(value))) if field and not secret and isinstance(value, (str, int, float)) else ""
    return (field.upper() or "settings"), shown, message


def _shown(value: str, limit: int = 240) -> str:
    """A value as the line shows it: whole up to `limit` characters (a path must stay findable:
    a deep temporary folder is over 100), else its start and its end around an ellipsis."""
    if len(value) <= limit:
        return value
    half = (limit - 1) // 2
    return f"{value[:half]}…{value[-half:]}"


# --- the one line -------------------------------------------------------------------------------------

def debugging() -> bool:
    """SMS_LOG_LEVEL=DEBUG (read from the environment: the settings themselves may be what failed)."""
    return os.environ.get("SMS_LOG_LEVEL", "").strip().upper() == "DEBUG"


def report(exc: StartupFailed) -> str:
    """What is printed: the line, after the (scrubbed) traceback when debugging."""
    if not debugging():
        return exc.line()
    secrets = secrets_of(os.environ.get("CLICKHOUSE_URL", ""))
    return scrub("".join(traceback.format_exception(exc)), secrets) + exc.line()
