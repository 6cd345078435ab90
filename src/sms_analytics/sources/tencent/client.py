"""A thin async wrapper over the official Tencent Cloud SMS SDK (API 2021-01-11, seed 002).

The SDK (``tencentcloud.sms.v20210111.sms_client.SmsClient``) signs every call with
TC3-HMAC-SHA256 and is blocking (``requests``), so each call runs in ``asyncio.to_thread``. Answers
are returned as plain JSON (``msgspec.json.decode(resp.to_json_string())``): the response fields without the
``Response`` wrapper, e.g. ``{"SendStatusSet": [...], "RequestId": "..."}``; the pull methods return
just their record list (``[]`` when there is none).

Endpoint and scheme go to the SDK's ``HttpProfile(protocol=scheme, endpoint=endpoint)``: the SDK
builds ``<scheme>://<endpoint>/`` and signs ``host:<endpoint>``, so a local simulator is
``TencentClient(..., endpoint="127.0.0.1:8080", scheme="http")`` (``endpoint`` may also be given as
a URL, ``"http://127.0.0.1:8080"``, whose scheme then wins). For a loopback endpoint the SDK's
environment proxy lookup is switched off, so ``HTTP_PROXY`` cannot capture local calls.

Any SDK failure (an ``Error`` answer, a network error, an unreadable answer) raises
:class:`TencentApiError` with the API's ``Code``/``Message``/``RequestId`` (or the SDK's own codes
such as ``ClientNetworkError``). Secrets and phone numbers are never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
import structlog
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models
from tencentcloud.sms.v20210111.sms_client import SmsClient

from sms_analytics.model.addresses import is_loopback

log = structlog.get_logger(__name__)

T = TypeVar("T")


class TencentApiError(Exception):
    """A failed Tencent Cloud API call: ``code`` (e.g. ``AuthFailure.SignatureFailure``),
    ``message`` and the ``request_id`` of the answer (``None`` when no answer came)."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"Tencent API error {code}: {message}" + (f" (RequestId {request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.request_id = request_id


class TencentClient:
    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        endpoint: str = "sms.tencentcloudapi.com",
        region: str = "ap-guangzhou",
        scheme: str = "https",
        timeout: int = 30,
    ) -> None:
        if "://" in endpoint:
            url = urlsplit(endpoint)
            scheme, endpoint = url.scheme, url.netloc
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError("scheme must be http or https")
        self.endpoint = endpoint
        self.region = region
        self.scheme = scheme
        http = HttpProfile(protocol=scheme, endpoint=endpoint, reqMethod="POST", reqTimeout=timeout)
        self._sdk = SmsClient(credential.Credential(secret_id, secret_key), region, ClientProfile(httpProfile=http))
        if is_loopback(urlsplit(f"//{endpoint}").hostname or ""):
            conn = getattr(getattr(self._sdk, "request", None), "conn", None)
            if conn is not None:
                conn.proxy = None
                session = getattr(conn, "_session", None)
                if session is not None:
                    session.trust_env = False

    def __repr__(self) -> str:
        return f"TencentClient(endpoint={self.endpoint!r}, region={self.region!r}, scheme={self.scheme!r})"

    # --- API ------------------------------------------------------------------------------------

    async def send_sms(self, app_id: str, phones: Sequence[str], template_id: str, sign: str,
                       params: Sequence[str] = (), session_context: str = "") -> dict[str, Any]:
        """SendSms to up to 200 E.164 numbers. Returns ``{"SendStatusSet": [...], "RequestId": ...}``;
        each SendStatus has its own ``Code`` (``"Ok"`` when accepted)."""
        if isinstance(phones, str):
            phones = [phones]
        req = models.SendSmsRequest()
        req.SmsSdkAppId = app_id
        req.PhoneNumberSet = list(phones)
        req.TemplateId = str(template_id)
        req.SignName = sign
        req.TemplateParamSet = [str(p) for p in params]
        if session_context:
            req.SessionContext = session_context
        doc = await self._call("SendSms", self._sdk.SendSms, req)
        statuses = doc.get("SendStatusSet") or []
        log.debug("tencent.send_sms", numbers=len(phones),
                  accepted=sum(1 for s in statuses if isinstance(s, dict) and s.get("Code") == "Ok"),
                  request_id=doc.get("RequestId"))
        return doc

    async def pull_send_status(self, app_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """PullSmsSendStatus: pending delivery statuses (Limit ≤ 100; each is returned once)."""
        req = models.PullSmsSendStatusRequest()
        req.SmsSdkAppId = app_id
        req.Limit = limit
        return self._records(await self._call("PullSmsSendStatus", self._sdk.PullSmsSendStatus, req),
                             "PullSmsSendStatusSet")

    async def pull_send_status_by_phone(self, app_id: str, phone_e164: str, begin_ts: int, end_ts: int | None,
                                        offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """PullSmsSendStatusByPhoneNumber: one number's statuses between two epoch seconds
        (``end_ts=None``: up to now). Does not consume them."""
        req = models.PullSmsSendStatusByPhoneNumberRequest()
        self._by_phone_request(req, app_id, phone_e164, begin_ts, end_ts, offset, limit)
        return self._records(
            await self._call("PullSmsSendStatusByPhoneNumber", self._sdk.PullSmsSendStatusByPhoneNumber, req),
            "PullSmsSendStatusSet")

    async def pull_reply_status_by_phone(self, app_id: str, phone_e164: str, begin_ts: int, end_ts: int | None,
                                         offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """PullSmsReplyStatusByPhoneNumber: one number's replies between two epoch seconds (the
        reply time; ``end_ts=None``: up to now). Does not consume them."""
        req = models.PullSmsReplyStatusByPhoneNumberRequest()
        self._by_phone_request(req, app_id, phone_e164, begin_ts, end_ts, offset, limit)
        return self._records(
            await self._call("PullSmsReplyStatusByPhoneNumber", self._sdk.PullSmsReplyStatusByPhoneNumber, req),
            "PullSmsReplyStatusSet")

    async def pull_reply_status(self, app_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """PullSmsReplyStatus: pending replies (Limit ≤ 100; each is returned once)."""
        req = models.PullSmsReplyStatusRequest()
        req.SmsSdkAppId = app_id
        req.Limit = limit
        return self._records(await self._call("PullSmsReplyStatus", self._sdk.PullSmsReplyStatus, req),
                             "PullSmsReplyStatusSet")

    async def callback_status_statistics(self, app_id: str, begin_hour: str, end_hour: str, limit: int = 0,
                                         offset: int = 0) -> dict[str, Any]:
        """CallbackStatusStatistics for ``yyyymmddhh`` hours (China time). Returns
        ``{"CallbackStatusStatistics": {...}, "RequestId": ...}``."""
        req = models.CallbackStatusStatisticsRequest()
        self._stats_request(req, app_id, begin_hour, end_hour, limit, offset)
        return await self._call("CallbackStatusStatistics", self._sdk.CallbackStatusStatistics, req)

    async def send_status_statistics(self, app_id: str, begin_hour: str, end_hour: str, limit: int = 0,
                                     offset: int = 0) -> dict[str, Any]:
        """SendStatusStatistics for ``yyyymmddhh`` hours (China time). Returns
        ``{"SendStatusStatistics": {...}, "RequestId": ...}``."""
        req = models.SendStatusStatisticsRequest()
        self._stats_request(req, app_id, begin_hour, end_hour, limit, offset)
        return await self._call("SendStatusStatistics", self._sdk.SendStatusStatistics, req)

    async def sms_packages_statistics(self, app_id: str, begin_hour: str, end_hour: str, limit: int = 500,
                                      offset: int = 0) -> list[dict[str, Any]]:
        """SmsPackagesStatistics: the packages created between two ``yyyymmddhh`` hours (China time;
        the end before now), ``limit`` ≤ 500. Returns SmsPackagesStatisticsSet."""
        req = models.SmsPackagesStatisticsRequest()
        self._stats_request(req, app_id, begin_hour, end_hour, limit, offset)
        return self._records(await self._call("SmsPackagesStatistics", self._sdk.SmsPackagesStatistics, req),
                             "SmsPackagesStatisticsSet")

    async def describe_sms_template_list(self, international: int, template_ids: Sequence[int] = (), *,
                                         limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """DescribeSmsTemplateList: the templates ``template_ids``, or with none the list from ``offset``
        (``limit`` ≤ 100); ``international`` 0 domestic, 1 international. Returns DescribeTemplateStatusSet."""
        req = models.DescribeSmsTemplateListRequest()
        req.International = international
        if template_ids:
            req.TemplateIdSet = [int(t) for t in template_ids]
        else:
            req.Limit, req.Offset = limit, offset
        return self._records(await self._call("DescribeSmsTemplateList", self._sdk.DescribeSmsTemplateList, req),
                             "DescribeTemplateStatusSet")

    async def describe_sms_sign_list(self, international: int, sign_ids: Sequence[int]) -> list[dict[str, Any]]:
        """DescribeSmsSignList: the signs ``sign_ids`` (≤ 100). Returns DescribeSignListStatusSet."""
        req = models.DescribeSmsSignListRequest()
        req.International = international
        req.SignIdSet = [int(s) for s in sign_ids]
        return self._records(await self._call("DescribeSmsSignList", self._sdk.DescribeSmsSignList, req),
                             "DescribeSignListStatusSet")

    # --- internals ------------------------------------------------------------------------------

    @staticmethod
    def _stats_request(req: Any, app_id: str, begin_hour: str, end_hour: str, limit: int, offset: int) -> None:
        req.SmsSdkAppId = app_id
        req.BeginTime = str(begin_hour)
        req.EndTime = str(end_hour)
        req.Limit = limit
        req.Offset = offset

    @staticmethod
    def _by_phone_request(req: Any, app_id: str, phone_e164: str, begin_ts: int, end_ts: int | None, offset: int,
                          limit: int) -> None:
        req.SmsSdkAppId = app_id
        req.PhoneNumber = phone_e164
        req.BeginTime = int(begin_ts)
        if end_ts is not None:
            req.EndTime = int(end_ts)
        req.Offset = offset
        req.Limit = limit

    @staticmethod
    def _records(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
        records = doc.get(key) or []
        return [r for r in records if isinstance(r, dict)]

    async def _call(self, action: str, method: Callable[[T], Any], req: T) -> dict[str, Any]:
        try:
            resp = await asyncio.to_thread(method, req)
        except TencentCloudSDKException as exc:
            code, message, request_id = exc.get_code(), exc.get_message(), exc.get_request_id()
            log.warning("tencent.api_error", action=action, code=code, request_id=request_id)
            raise TencentApiError(str(code), str(message), request_id or None) from None
        try:
            doc = msgspec.json.decode(resp.to_json_string())
        except (TypeError, ValueError):
            raise TencentApiError("ClientError", f"{action}: unreadable SDK response") from None
        if not isinstance(doc, dict):
            raise TencentApiError("ClientError", f"{action}: unexpected SDK response")
        return doc
