"""Alibaba Cloud SMS receipts (SmsReport) and uplinks (SmsUp) pulled from their MNS queue (seed 000
§11.1-§11.2), the alternative to the HTTP batch push.

One loop per queue: BatchReceiveMessage (long polling, the blocking aliyun-mns-sdk calls run in a
worker thread), one record per message body, `parse` (Aliyun's `.receipts` / `.replies`) -> the
events and the rejected records, `publish` (returns only after the broker acknowledged both, the
rejected ones as dead letters), and only then BatchDeleteMessage. If publishing fails nothing is
deleted: the messages become visible again after the queue's visibility timeout and are received
again (at-least-once; the pipeline deduplicates by message id). A message that cannot be used
(not JSON, a record missing fields) is dead-lettered, and so deleted like the others.

Bodies: the SMS service writes base64-encoded JSON (Aliyun's consumer demos decode base64); plain
JSON text is accepted too. The queue is read raw (`set_encoding(False)`) and each body decoded
here, so one undecodable message is dead-lettered instead of failing the SDK's decoding of its
whole batch.

MessageNotExist is an empty queue, not an error. Any other failure (MNS error, network, publish,
credentials) is counted and retried with exponential backoff, capped (`sms_analytics.retrying`).
The queue's credentials come from a `CredentialSource`: the SMS service hands out temporary STS
tokens for its queues (QueryTokenForMnsQueue); the SDK Account is rebuilt whenever the source
returns other values.
Secrets, tokens and message bodies (phone numbers) are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec
import structlog
from mns.account import Account
from mns.mns_exception import MNSExceptionBase, MNSServerException

from sms_analytics.model.times import now_ms
from sms_analytics.retrying import Backoff, is_error, pause, retry, retry_unless_stopped
from sms_analytics.sources.base.feed import Publish
from sms_analytics.sources.base.fields import Rejected, decode_json, raw_of

log = structlog.get_logger(__name__)

Kind = Literal["SmsReport", "SmsUp"]
Parse = Callable[[Any, int], Any]

MAX_BATCH = 16  # MNS: numOfMessages 1..16
MAX_WAIT_SECONDS = 30  # MNS: waitseconds 0..30
DELETE_ATTEMPTS = 3


class CredentialSource(Protocol):
    """Where the queue's credentials come from: (access_id, access_key, security_token or None).
    Called before every MNS call (from a worker thread, so it may block); cache inside."""

    def get(self) -> tuple[str, str, str | None]: ...


@dataclass(frozen=True)
class StaticCredentials:
    access_id: str
    access_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def get(self) -> tuple[str, str, str | None]:
        return self.access_id, self.access_key, self.security_token


class RefreshingCredentials:
    """Temporary credentials with an expiry, such as the SMS service's QueryTokenForMnsQueue answer
    (MessageTokenDTO: AccessKeyId, AccessKeySecret, SecurityToken, ExpireTime). `fetch` returns
    (access_id, access_key, security_token, expires_at epoch seconds); it is called again
    `refresh_before` seconds ahead of the expiry, as Aliyun's demos do (2 minutes)."""

    def __init__(self, fetch: Callable[[], tuple[str, str, str | None, float]], *, refresh_before: float = 120.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._refresh_before = refresh_before
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[str, str, str | None] | None = None
        self._expires_at = 0.0

    def get(self) -> tuple[str, str, str | None]:
        with self._lock:
            if self._current is None or self._clock() >= self._expires_at - self._refresh_before:
                access_id, access_key, token, expires_at = self._fetch()
                self._current = (access_id, access_key, token)
                self._expires_at = float(expires_at)
            return self._current

    def __repr__(self) -> str:
        return f"RefreshingCredentials(expires_at={self._expires_at!r})"


@dataclass
class MnsStats:
    polls: int = 0  # BatchReceiveMessage calls answered (with messages or MessageNotExist)
    empty: int = 0  # of which MessageNotExist
    received: int = 0  # messages received, redeliveries included
    events: int = 0  # events published
    rejected: int = 0  # records dead-lettered
    published: int = 0  # messages whose events / dead letters the broker acknowledged
    deleted: int = 0  # messages deleted from the queue
    delete_failed: int = 0  # handles MNS refused (expired: those messages come back)
    errors: int = 0  # failed loop iterations (receive, publish, delete, credentials)
    account_builds: int = 0  # SDK Accounts created (first one + credential changes)
    last_error: str = ""  # MNS error code or exception type, never a message
    last_error_stage: str = ""  # credentials | receive | publish | delete
    backoff: float = 0.0  # the current backoff delay, 0 after a successful iteration


@dataclass(frozen=True, slots=True)
class MnsMessage:
    message_id: str
    receipt_handle: str
    body: str | bytes  # the SDK's message_body: text, or bytes by its decoding
    dequeue_count: int


class _StageError(Exception):
    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(stage)
        self.stage = stage
        self.cause = cause


def decode_body(body: str | bytes) -> Any:
    """One MNS message body -> its JSON value: plain JSON text, or base64 of JSON (what the SMS
    service writes). Raises ValueError."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("message body is not UTF-8") from None
    text = body.strip()
    if not text:
        raise ValueError("message body is empty")
    try:
        return decode_json(text)
    except msgspec.DecodeError:
        pass
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("message body is neither JSON nor base64-encoded JSON") from None
    try:
        return decode_json(decoded)
    except msgspec.DecodeError:
        raise ValueError("message body is base64 but not of JSON (UTF-8)") from None


def error_code(exc: BaseException) -> str:
    if isinstance(exc, MNSExceptionBase):
        return str(exc.type)
    return type(exc).__name__


class MnsConsumer:
    def __init__(self, *, endpoint: str, access_id: str, access_key: str, queue: str, kind: Kind,
                 publish: Publish, parse: Parse, batch: int = 16, wait_seconds: int = 3,
                 credentials: CredentialSource | None = None, min_backoff: float = 0.5,
                 max_backoff: float = 30.0, idle: float = 1.0) -> None:
        if kind not in ("SmsReport", "SmsUp"):
            raise ValueError(f"kind must be SmsReport or SmsUp, not {kind!r}")
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be 1..{MAX_BATCH}")
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be 0..{MAX_WAIT_SECONDS}")
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http:// or https:// URL")
        self.endpoint = endpoint.rstrip("/")
        self.queue_name = queue
        self.kind = kind
        self.name = f"aliyun.mns.{kind}"
        self.publish = publish
        self.parse = parse
        self.batch = batch
        self.wait_seconds = int(wait_seconds)
        self.credentials: CredentialSource = credentials or StaticCredentials(access_id, access_key)
        self.backoff = Backoff(first=min_backoff, cap=max_backoff)  # failed rounds, and the deletes' retries
        self.idle = idle  # pause after an empty answer when not long polling (wait_seconds=0)
        self.source = f"feed:aliyun-mns:{kind}"
        self.stats = MnsStats()
        self._account: Account | None = None
        self._queue: Any = None
        self._creds: tuple[str, str, str | None] | None = None

    # ------------------------------------------------------------------ SDK calls (worker thread)

    def _sdk_queue(self) -> Any:
        try:
            creds = self.credentials.get()
            access_id, access_key, token = creds
            if not access_id or not access_key:
                raise ValueError("the credential source returned an empty access id or key")
        except Exception as exc:
            raise _StageError("credentials", exc) from exc
        if creds != self._creds or self._queue is None:
            self._close_sdk()
            account = Account(self.endpoint, access_id, access_key, token or "")
            # a long poll must not hit the socket timeout (SDK default 60 s)
            account.get_client().set_connection_timeout(self.wait_seconds + 30)
            queue = account.get_queue(self.queue_name)
            queue.set_encoding(False)  # bodies are decoded per message by decode_body
            self._account, self._queue, self._creds = account, queue, creds
            self.stats.account_builds += 1
            if self.stats.account_builds > 1:
                log.info("mns.credentials_changed", queue=self.queue_name, kind=self.kind)
        return self._queue

    def _close_sdk(self) -> None:
        if self._account is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                self._account.get_client().close_connection()
        self._account = self._queue = None

    def _receive_sync(self) -> list[MnsMessage]:
        queue = self._sdk_queue()
        try:
            messages = queue.batch_receive_message(self.batch, self.wait_seconds)
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":
                return []
            raise _StageError("receive", exc) from exc
        except Exception as exc:
            raise _StageError("receive", exc) from exc
        return [MnsMessage(str(m.message_id), str(m.receipt_handle), m.message_body, int(m.dequeue_count))
                for m in messages]

    def _delete_sync(self, handles: list[str]) -> list[str]:
        """Batch delete; returns the handles MNS refused (expired or superseded)."""
        queue = self._sdk_queue()
        try:
            queue.batch_delete_message(handles)
        except MNSServerException as exc:
            if exc.sub_errors:
                return [str(e.get("ReceiptHandle", "")) for e in exc.sub_errors if isinstance(e, dict)]
            raise
        return []

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        log.info("mns.start", queue=self.queue_name, kind=self.kind, batch=self.batch, wait_seconds=self.wait_seconds)
        try:
            while not stop.is_set():
                handled = await retry_unless_stopped(lambda: self.poll(stop), self.backoff, stop,
                                                     on_failure=self._failed)
                if handled is None:  # stopped while backing off
                    break
                self.stats.backoff = 0.0
        finally:
            await asyncio.to_thread(self._close_sdk)
            log.info("mns.stop", queue=self.queue_name, kind=self.kind, received=self.stats.received,
                     deleted=self.stats.deleted, errors=self.stats.errors)

    async def poll(self, stop: asyncio.Event | None = None) -> int:
        """One receive -> parse -> publish -> delete round; returns the number of messages handled.
        Raises on failure (nothing is deleted unless publish returned)."""
        messages = await asyncio.to_thread(self._receive_sync)
        self.stats.polls += 1
        if not messages:
            self.stats.empty += 1
            if self.wait_seconds == 0 and self.idle > 0:
                await pause(stop, self.idle)
            return 0
        self.stats.received += len(messages)
        events, rejected = self._parse(messages)
        try:
            await self.publish(events, rejected, self.source)
        except Exception as exc:
            raise _StageError("publish", exc) from exc
        self.stats.published += len(messages)
        self.stats.events += len(events)
        self.stats.rejected += len(rejected)
        await self._delete([m.receipt_handle for m in messages])
        return len(messages)

    def _parse(self, messages: Sequence[MnsMessage]) -> tuple[list, list[Rejected]]:
        now = now_ms()
        events: list = []
        rejected: list[Rejected] = []
        for index, message in enumerate(messages):
            try:
                record = decode_body(message.body)
            except ValueError as exc:
                body = message.body.encode("utf-8", "replace") if isinstance(message.body, str) else bytes(message.body)
                rejected.append(Rejected(index, f"MNS {self.kind} message {message.message_id}: {exc}", body))
                continue
            try:
                parsed = self.parse([record], now)
            except Exception as exc:  # noqa: BLE001 - a parser failure must not block the queue
                rejected.append(Rejected(index, f"MNS {self.kind} message {message.message_id}: "
                                                f"{type(exc).__name__}: {exc}", raw_of(record)))
                continue
            events.extend(parsed.events)
            rejected.extend(Rejected(index, r.reason, r.raw) for r in parsed.rejected)
        return events, rejected

    async def _delete(self, handles: list[str]) -> None:
        """BatchDeleteMessage, DELETE_ATTEMPTS times at most (a credentials failure is not retried)."""
        def retried(exc: BaseException) -> bool:
            return is_error(exc) and not isinstance(exc, _StageError)

        def failed(exc: BaseException, retry_in: float, attempt: int) -> None:
            log.warning("mns.delete_retry", queue=self.queue_name, attempt=attempt, error=error_code(exc))

        try:
            refused = await retry(lambda: asyncio.to_thread(self._delete_sync, handles), self.backoff,
                                  attempts=DELETE_ATTEMPTS, retry_if=retried, on_failure=failed)
        except Exception as exc:
            cause = exc.cause if isinstance(exc, _StageError) else exc
            raise _StageError("delete", cause) from exc
        self.stats.deleted += len(handles) - len(refused)
        if refused:
            self.stats.delete_failed += len(refused)
            log.warning("mns.delete_refused", queue=self.queue_name, count=len(refused),
                        note="receipt handles expired; these messages will be received again")

    def _failed(self, exc: BaseException, delay: float, consecutive: int) -> None:
        """A failed round (credentials, receive, publish or delete): counted and logged, retried after `delay`."""
        stage = exc.stage if isinstance(exc, _StageError) else "receive"
        cause = exc.cause if isinstance(exc, _StageError) else exc
        self.stats.errors += 1
        self.stats.last_error = error_code(cause)
        self.stats.last_error_stage = stage
        self.stats.backoff = delay
        log.warning("mns.error", queue=self.queue_name, kind=self.kind, stage=stage, error=error_code(cause),
                    retry_in=delay, consecutive=consecutive)


__all__ = [
    "CredentialSource", "MnsConsumer", "MnsMessage", "MnsStats", "RefreshingCredentials", "StaticCredentials",
    "decode_body", "error_code",
]
