"""A local Alibaba Cloud MNS queue endpoint on aiohttp, as far as the receipt consumer needs it.

Alibaba Cloud SMS can hand its SmsReport / SmsUp messages to an MNS queue (seed 000 §11.1-§11.2);
the consumer pulls them with aliyun-mns-sdk. This server speaks the MNS HTTP API (version
2015-06-06) the way that SDK calls it:

* ``GET /queues/<q>/messages[?waitseconds=N]``                    ReceiveMessage
* ``GET /queues/<q>/messages?numOfMessages=N[&waitseconds=N]``    BatchReceiveMessage (N 1..16)
* ``DELETE /queues/<q>/messages?ReceiptHandle=H``                 DeleteMessage (204)
* ``DELETE /queues/<q>/messages`` + ``<ReceiptHandles>`` body      BatchDeleteMessage (204, or 404
  with an ``<Errors>`` list naming the handles that were not deleted; the others are deleted)

Every request is authenticated like MNS does it: ``Authorization: MNS <AccessKeyId>:<Signature>``,
Signature = base64(HMAC-SHA1(secret, VERB\\nContent-MD5\\nContent-Type\\nDate\\n
CanonicalizedMNSHeaders CanonicalizedResource)), the ``x-mns-*`` headers lower-cased, sorted,
one ``name:value\\n`` each, the resource being the request path with its query string as sent.
Errors are the MNS XML ``<Error>`` document with the codes and statuses of the MNS error table
(MissingAuthorizationHeader / InvalidAuthorizationHeader 400, MissingDateHeader /
InvalidDateHeader 400, TimeExpired 408 for a Date more than 15 minutes off the wall clock,
InvalidAccessKeyId 403, SignatureDoesNotMatch 403, AccessDenied 403 for a wrong security token,
QueueNotExist 404, MessageNotExist 404 for an empty queue, ReceiptHandleError 400,
MissingReceiptHandle 400, MalformedXML 400, InvalidArgument 400).

Queue semantics: a received message becomes invisible for ``visibility_timeout`` seconds and gets
a new receipt handle; it is visible again (with a higher DequeueCount) unless it was deleted with
that handle before the timeout — at-least-once delivery. A handle is valid only until its
message's NextVisibleTime. Long polling waits up to ``waitseconds`` (0..30, as MNS) for a message.

Message bodies: the SMS service puts base64-encoded JSON in the queue (Aliyun's own consumer demos
read it with the SDK's default base64 decoding, or say "消息体需要base64解码"), so ``send`` encodes
the body by default; ``send(..., base64_body=False)`` stores plain text.

Not implemented: SendMessage over HTTP, PeekMessage, ChangeMessageVisibility, queue management,
topics, priorities and delayed messages. Message bodies and keys are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from xml.etree import ElementTree

import msgspec
from aiohttp import web

logger = logging.getLogger(__name__)

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
API_VERSION = "2015-06-06"
MAX_BATCH = 16  # BatchReceiveMessage / BatchDeleteMessage: 1..16
MAX_WAIT_SECONDS = 30  # waitseconds: 0..30
DATE_WINDOW_SECONDS = 15 * 60
DEFAULT_PRIORITY = 8

_STATUS = {
    "MissingAuthorizationHeader": 400, "InvalidAuthorizationHeader": 400, "MissingDateHeader": 400,
    "InvalidDateHeader": 400, "TimeExpired": 408, "InvalidAccessKeyId": 403, "SignatureDoesNotMatch": 403,
    "AccessDenied": 403, "QueueNotExist": 404, "MessageNotExist": 404, "ReceiptHandleError": 400,
    "MissingReceiptHandle": 400, "MalformedXML": 400, "InvalidArgument": 400, "InvalidRequestURL": 400,
    "InvalidDegist": 400,
}


class MnsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.status = _STATUS.get(code, 400)


@dataclass(slots=True)
class _Message:
    message_id: str
    body: str
    body_md5: str
    enqueue_ms: int
    priority: int = DEFAULT_PRIORITY
    first_dequeue_ms: int = 0
    dequeue_count: int = 0
    visible_at: float = 0.0  # clock() seconds
    handle: str = ""


@dataclass(slots=True)
class _Queue:
    name: str
    messages: dict[str, _Message] = field(default_factory=dict)  # insertion order = enqueue order
    handles: dict[str, str] = field(default_factory=dict)  # current receipt handle -> message id
    waiters: set[asyncio.Future] = field(default_factory=set)


def _xml(root: ElementTree.Element) -> bytes:
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)


def _element(tag: str, children: dict[str, Any] | None = None) -> ElementTree.Element:
    elem = ElementTree.Element(tag, {"xmlns": XMLNS})
    for name, value in (children or {}).items():
        ElementTree.SubElement(elem, name).text = str(value)
    return elem


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def string_to_sign(method: str, headers: Any, resource: str) -> str:
    """The canonical string MNS signs (what aliyun-mns-sdk's MNSClient.get_signature builds)."""
    mns_headers = sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-mns-"))
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in mns_headers)
    return "{}\n{}\n{}\n{}\n{}{}".format(
        method, headers.get("content-md5", ""), headers.get("content-type", ""), headers.get("date", ""),
        canonical_headers, resource,
    )


def sign(access_key: str, text: str) -> str:
    digest = hmac.new(access_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class MnsSimulator:
    """In-memory MNS queues behind the MNS HTTP API. Use ``app()`` with an aiohttp runner, enqueue
    with ``send``; ``size`` and ``deleted`` tell what the consumer did."""

    def __init__(self, *, access_id: str, access_key: str, visibility_timeout: float = 30.0,
                 clock: Callable[[], float] = time.time, security_token: str | None = None) -> None:
        self.visibility_timeout = float(visibility_timeout)
        self.clock = clock
        self.deleted = 0
        self.requests: dict[str, int] = {}  # operation or error code -> count
        self._credentials: dict[str, tuple[str, str | None]] = {access_id: (access_key, security_token)}
        self._queues: dict[str, _Queue] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._ids = itertools.count(1)

    # ----------------------------------------------------------------- helpers for tests

    def set_credentials(self, access_id: str, access_key: str, security_token: str | None = None) -> None:
        """Replace the accepted credentials (a rotated key or a new temporary token)."""
        with self._lock:
            self._credentials = {access_id: (access_key, security_token)}

    def create_queue(self, queue_name: str) -> None:
        with self._lock:
            self._queues.setdefault(queue_name, _Queue(queue_name))

    def send(self, queue_name: str, body: str | bytes | dict | list, *, base64_body: bool = True) -> str:
        """Enqueue one message (creating the queue); a dict or list is JSON-encoded first. Like the
        SMS service, the body is stored base64-encoded unless ``base64_body=False``. Returns the
        MessageId."""
        if isinstance(body, (dict, list)):
            raw = msgspec.json.encode(body)
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = bytes(body)
        if not raw:
            raise ValueError("MNS messages cannot be empty")
        text = base64.b64encode(raw).decode("ascii") if base64_body else raw.decode("utf-8")
        message_id = f"{uuid.uuid4().hex[:16].upper()}-{next(self._ids)}"
        with self._lock:
            queue = self._queues.setdefault(queue_name, _Queue(queue_name))
            queue.messages[message_id] = _Message(
                message_id=message_id, body=text, body_md5=hashlib.md5(text.encode("utf-8")).hexdigest().upper(),
                enqueue_ms=int(self.clock() * 1000), visible_at=self.clock(),
            )
        self._wake(queue_name)
        return message_id

    def size(self, queue_name: str) -> int:
        """Messages not deleted yet, visible or not."""
        with self._lock:
            queue = self._queues.get(queue_name)
            return len(queue.messages) if queue else 0

    def visible(self, queue_name: str) -> int:
        now = self.clock()
        with self._lock:
            queue = self._queues.get(queue_name)
            return sum(1 for m in queue.messages.values() if m.visible_at <= now) if queue else 0

    def dequeue_counts(self, queue_name: str) -> list[int]:
        with self._lock:
            queue = self._queues.get(queue_name)
            return [m.dequeue_count for m in queue.messages.values()] if queue else []

    # ----------------------------------------------------------------- the HTTP application

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/queues/{queue}/messages", self._messages)
        app.router.add_route("*", "/{tail:.*}", self._other)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = False

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing = True  # long polls answer at once instead of holding the shutdown
        for name in list(self._queues):
            self._notify(name)

    def _wake(self, queue_name: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._notify(queue_name)
        else:
            loop.call_soon_threadsafe(self._notify, queue_name)

    def _notify(self, queue_name: str) -> None:
        queue = self._queues.get(queue_name)
        if queue is None:
            return
        for fut in list(queue.waiters):
            if not fut.done():
                fut.set_result(None)

    def _count(self, what: str) -> None:
        self.requests[what] = self.requests.get(what, 0) + 1

    def _error(self, request: web.Request, exc: MnsError, request_id: str) -> web.Response:
        self._count(exc.code)
        doc = _element("Error", {"Code": exc.code, "Message": exc.message, "RequestId": request_id,
                                 "HostId": f"http://{request.host}"})
        return self._reply(exc.status, _xml(doc), request_id)

    @staticmethod
    def _reply(status: int, body: bytes | None, request_id: str) -> web.Response:
        headers = {"x-mns-request-id": request_id, "x-mns-version": API_VERSION, "Server": "AliyunMQS"}
        if body is None:
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, body=body, headers=headers, content_type="text/xml", charset="utf-8")

    def _authenticate(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization")
        if not auth:
            raise MnsError("MissingAuthorizationHeader", "Authorization header is required.")
        scheme, _, rest = auth.partition(" ")
        access_id, sep, signature = rest.rpartition(":")
        if scheme != "MNS" or not sep or not access_id or not signature:
            raise MnsError("InvalidAuthorizationHeader", "The Authorization header format is invalid.")
        date = request.headers.get("Date")
        if not date:
            raise MnsError("MissingDateHeader", "Date header is required.")
        try:
            sent = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            raise MnsError("InvalidDateHeader", "The Date header format is invalid.") from None
        if abs(time.time() - sent) > DATE_WINDOW_SECONDS:
            raise MnsError("TimeExpired", "The Http Request you sent is expired.")
        with self._lock:
            known = self._credentials.get(access_id)
        if known is None:
            raise MnsError("InvalidAccessKeyId", "The AccessKey Id you provided is not exist.")
        secret, token = known
        expected = sign(secret, string_to_sign(request.method, request.headers, request.raw_path))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise MnsError("SignatureDoesNotMatch", "The request signature we calculated does not match "
                                                    "the signature you provided.")
        if token is not None and request.headers.get("security-token", "") != token:
            raise MnsError("AccessDenied", "The OwnerId that your Access Key Id associated to is forbidden "
                                           "for this operation.")

    async def _other(self, request: web.Request) -> web.Response:
        request_id = _request_id()
        try:
            self._authenticate(request)
            raise MnsError("InvalidRequestURL", "Http request URL format invalid (not simulated).")
        except MnsError as exc:
            return self._error(request, exc, request_id)

    async def _messages(self, request: web.Request) -> web.Response:
        request_id = _request_id()
        try:
            self._authenticate(request)
            name = request.match_info["queue"]
            with self._lock:
                exists = name in self._queues
            if not exists:
                raise MnsError("QueueNotExist", "The queue name you provided is not exist.")
            if request.method == "GET":
                return await self._receive(request, name, request_id)
            if request.method == "DELETE":
                if "ReceiptHandle" in request.query:
                    return self._delete_one(request, name, request_id)
                return await self._delete_batch(request, name, request_id)
            raise MnsError("InvalidRequestURL", "Http request URL format invalid (not simulated).")
        except MnsError as exc:
            return self._error(request, exc, request_id)

    # ----------------------------------------------------------------- receive

    async def _receive(self, request: web.Request, name: str, request_id: str) -> web.Response:
        batch = "numOfMessages" in request.query
        count = _int_arg(request.query, "numOfMessages", 1, 1, MAX_BATCH) if batch else 1
        wait = _int_arg(request.query, "waitseconds", 0, 0, MAX_WAIT_SECONDS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            taken = self._take(name, count)
            if taken:
                break
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise MnsError("MessageNotExist", "Message not exist.")
            await self._wait_change(name, min(remaining, self._until_next_visible(name), 0.25))
        self._count("BatchReceiveMessage" if batch else "ReceiveMessage")
        if batch:
            root = _element("Messages")
            for msg in taken:
                root.append(_message_element(msg))
        else:
            root = _message_element(taken[0])
            root.set("xmlns", XMLNS)
        return self._reply(200, _xml(root), request_id)

    def _take(self, name: str, count: int) -> list[_Message]:
        now = self.clock()
        taken: list[_Message] = []
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                return taken
            for msg in queue.messages.values():
                if len(taken) >= count:
                    break
                if msg.visible_at > now:
                    continue
                queue.handles.pop(msg.handle, None)
                msg.dequeue_count += 1
                if not msg.first_dequeue_ms:
                    msg.first_dequeue_ms = int(now * 1000)
                msg.visible_at = now + self.visibility_timeout
                msg.handle = _receipt_handle(msg)
                queue.handles[msg.handle] = msg.message_id
                taken.append(msg)
        return taken

    def _until_next_visible(self, name: str) -> float:
        now = self.clock()
        with self._lock:
            queue = self._queues.get(name)
            times = [m.visible_at for m in queue.messages.values()] if queue else []
        return max(0.01, min(times) - now) if times else float(MAX_WAIT_SECONDS)

    async def _wait_change(self, name: str, timeout: float) -> None:
        with self._lock:
            queue = self._queues.get(name)
        if queue is None:
            return
        fut = asyncio.get_running_loop().create_future()
        queue.waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            queue.waiters.discard(fut)

    # ----------------------------------------------------------------- delete

    def _delete_handle(self, name: str, handle: str) -> bool:
        now = self.clock()
        with self._lock:
            queue = self._queues.get(name)
            message_id = queue.handles.get(handle) if queue else None
            msg = queue.messages.get(message_id) if queue and message_id else None
            if queue is None or message_id is None or msg is None or msg.handle != handle or msg.visible_at <= now:
                return False  # unknown, superseded by a later receive, or expired
            del queue.messages[message_id]
            del queue.handles[handle]
            self.deleted += 1
            return True

    def _delete_one(self, request: web.Request, name: str, request_id: str) -> web.Response:
        handle = request.query.get("ReceiptHandle", "")
        if not handle:
            raise MnsError("MissingReceiptHandle", "ReceiptHandle is required.")
        if not self._delete_handle(name, handle):
            raise MnsError("ReceiptHandleError", "The receipt handle you provide is not valid.")
        self._count("DeleteMessage")
        return self._reply(204, None, request_id)

    async def _delete_batch(self, request: web.Request, name: str, request_id: str) -> web.Response:
        body = await request.read()
        md5 = request.headers.get("content-md5")
        if md5 is not None:
            digest = hashlib.md5(body)
            accepted = {base64.b64encode(digest.hexdigest().encode()).decode(), base64.b64encode(digest.digest()).decode()}
            if md5 not in accepted:
                raise MnsError("InvalidDegist", "The Content-MD5 you specified is invalid.")
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise MnsError("MalformedXML", "The XML you provided was not well-formed.") from None
        if _local(root.tag) != "ReceiptHandles":
            raise MnsError("MalformedXML", "The XML you provided was not well-formed.")
        handles = [(child.text or "").strip() for child in root if _local(child.tag) == "ReceiptHandle"]
        if not 1 <= len(handles) <= MAX_BATCH:
            raise MnsError("InvalidArgument", f"The count of receipt handles should between 1 and {MAX_BATCH}.")
        failed = [h for h in handles if not h or not self._delete_handle(name, h)]
        self._count("BatchDeleteMessage")
        if not failed:
            return self._reply(204, None, request_id)
        errors = _element("Errors")
        for handle in failed:
            err = ElementTree.SubElement(errors, "Error")
            ElementTree.SubElement(err, "ErrorCode").text = "ReceiptHandleError"
            ElementTree.SubElement(err, "ErrorMessage").text = "The receipt handle you provide is not valid."
            ElementTree.SubElement(err, "ReceiptHandle").text = handle
        return self._reply(404, _xml(errors), request_id)


def _request_id() -> str:
    return uuid.uuid4().hex[:24].upper()


def _receipt_handle(msg: _Message) -> str:
    # URL-safe: the SDK puts it in the query string unescaped.
    raw = f"{msg.message_id}-{msg.dequeue_count}-{secrets.token_hex(6)}".encode()
    return "1-" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _int_arg(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise MnsError("InvalidArgument", f"The value of {name} should between {low} and {high}.")
    return value


def _message_element(msg: _Message) -> ElementTree.Element:
    elem = ElementTree.Element("Message")
    for tag, value in (
        ("MessageId", msg.message_id), ("ReceiptHandle", msg.handle), ("MessageBodyMD5", msg.body_md5),
        ("MessageBody", msg.body), ("EnqueueTime", msg.enqueue_ms), ("NextVisibleTime", int(msg.visible_at * 1000)),
        ("FirstDequeueTime", msg.first_dequeue_ms), ("DequeueCount", msg.dequeue_count), ("Priority", msg.priority),
    ):
        ElementTree.SubElement(elem, tag).text = str(value)
    return elem


__all__ = ["MnsError", "MnsSimulator", "sign", "string_to_sign"]
