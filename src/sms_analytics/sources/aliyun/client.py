"""Async client for Alibaba Cloud SMS (Dysmsapi ``2017-05-25``, seed 000) over the official SDK
(``alibabacloud_dysmsapi20170525``), using its ``*_async`` methods.

* ``send_sms``            SendSms (§7.1): one sign/template to ≤1000 numbers
* ``send_batch_sms``      SendBatchSms (§7.2): one sign (and variables) per number, ≤100
* ``query_send_details``  QuerySendDetails (§8.1): one number's records of one day, paged (≤50)
* ``query_sms_template``  QuerySmsTemplate (§10.2): one template's name, content, type and review status
* ``query_sms_sign``      QuerySmsSign (§9.3): one sign's review status
* ``query_send_statistics`` QuerySendStatistics (in the SDK, not in seed 000): per send date, counts

Signing: by default the SDK is told ``signature_algorithm="v2"``, which makes it sign as the
document's §5.4 RPC style (``SignatureMethod=HMAC-SHA1``, ``SignatureVersion=1.0``, all parameters
in the query string of a ``POST``; SendBatchSms's JSON lists in a form body, also signed). Passing
``signature_algorithm=None`` (or ``"ACS3-HMAC-SHA256"``) keeps the SDK's default V3 signature
(``Authorization: ACS3-HMAC-SHA256 …`` header).

Every method returns the reply body as a plain dict (the SDK model's ``to_map()``). A reply whose
``Code`` is not ``OK`` (business errors come back as HTTP 200), a gateway error (HTTP 4xx/5xx,
e.g. ``SignatureDoesNotMatch``) and a transport failure all raise :class:`AliyunApiError`.
Secrets, phone numbers and message contents are never logged.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import Any

import msgspec
import structlog
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as SmsClient
from alibabacloud_tea_openapi import utils_models as openapi_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from darabonba.exceptions import ValidateException as DaraValidateException
from Tea.exceptions import TeaException, ValidateException

log = structlog.get_logger(__name__)

# The real gateway appends the server's string to sign (which holds the request's phone numbers)
# to SignatureDoesNotMatch messages: keep that out of exceptions that may end up in logs.
_STRING_TO_SIGN = re.compile(r"\s*server string to sign is:.*$", re.IGNORECASE | re.DOTALL)


class AliyunApiError(Exception):
    """A failed call. ``code`` is the API's ``Code`` (§6.1 / gateway codes such as
    ``SignatureDoesNotMatch``) or ``SDK.<ExceptionType>`` when no reply was usable; ``status``
    the HTTP status when known; ``body`` the reply body when there was one."""

    def __init__(self, code: str, message: str, request_id: str = "", *, status: int | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(f"Aliyun SMS error {code}: {message}" + (f" (RequestId {request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.request_id = request_id
        self.status = status
        self.body = body


def _clean(message: Any) -> str:
    return _STRING_TO_SIGN.sub("", str(message or ""))


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode("utf-8")


class AliyunClient:
    def __init__(
        self,
        *,
        access_key_id: str,
        access_key_secret: str,
        endpoint: str = "dysmsapi.aliyuncs.com",
        protocol: str = "https",
        signature_algorithm: str | None = "v2",
        timeout: float = 10.0,
    ) -> None:
        """``endpoint`` is a host (``host:port`` for a simulator), ``protocol`` ``http``/``https``.
        ``signature_algorithm``: ``"v2"`` for the document's HMAC-SHA1 RPC signature, ``None`` for
        the SDK default (ACS3-HMAC-SHA256). ``timeout`` in seconds, for connect and for read."""
        self.access_key_id = access_key_id
        self.endpoint = endpoint
        self.protocol = protocol
        self.signature_algorithm = signature_algorithm
        millis = int(timeout * 1000)
        config = openapi_models.Config(
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            endpoint=endpoint,
            protocol=protocol,
            signature_algorithm=signature_algorithm,
            connect_timeout=millis,
            read_timeout=millis,
        )
        self._sdk = SmsClient(config)

    def __repr__(self) -> str:
        return (f"AliyunClient(endpoint={self.endpoint!r}, protocol={self.protocol!r}, "
                f"access_key_id={self.access_key_id!r}, signature_algorithm={self.signature_algorithm!r})")

    async def __aenter__(self) -> AliyunClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing to release: the SDK opens an HTTP session per call."""

    # --- API ----------------------------------------------------------------------------------

    async def send_sms(self, phones: Sequence[str], sign: str, template: str,
                       params: Mapping[str, Any] | None = None, out_id: str | None = None) -> dict[str, Any]:
        """SendSms: the same sign/template/variables to every number. Returns
        ``{"Code": "OK", "Message", "RequestId", "BizId"}``."""
        request = sms_models.SendSmsRequest(
            phone_numbers=",".join(phones),
            sign_name=sign,
            template_code=template,
            template_param=_json(dict(params)) if params is not None else None,
            out_id=out_id,
        )
        return await self._call("SendSms", self._sdk.send_sms_async, request, count=len(phones))

    async def send_batch_sms(self, phones: Sequence[str], signs: Sequence[str], template: str,
                             params: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None
                             ) -> dict[str, Any]:
        """SendBatchSms: ``signs[i]`` (and ``params[i]``) for ``phones[i]``; one mapping of
        ``params`` is used for every number."""
        if isinstance(params, Mapping):
            params = [params] * len(phones)
        request = sms_models.SendBatchSmsRequest(
            phone_number_json=_json(list(phones)),
            sign_name_json=_json(list(signs)),
            template_code=template,
            template_param_json=_json([dict(p) for p in params]) if params is not None else None,
        )
        return await self._call("SendBatchSms", self._sdk.send_batch_sms_async, request, count=len(phones))

    async def query_send_details(self, phone: str, send_date: str | date, *, biz_id: str | None = None,
                                 page_size: int = 50, current_page: int = 1) -> dict[str, Any]:
        """QuerySendDetails: records of ``phone`` sent on ``send_date`` (``yyyyMMdd``, China time).
        Returns ``{"Code", "Message", "RequestId", "TotalCount", "SmsSendDetailDTOs":
        {"SmsSendDetailDTO": [...]}}``."""
        if isinstance(send_date, date):
            send_date = send_date.strftime("%Y%m%d")
        request = sms_models.QuerySendDetailsRequest(
            phone_number=phone,
            send_date=send_date,
            biz_id=biz_id,
            page_size=page_size,
            current_page=current_page,
        )
        return await self._call("QuerySendDetails", self._sdk.query_send_details_async, request, count=1)

    async def query_sms_template(self, template_code: str) -> dict[str, Any]:
        """QuerySmsTemplate: ``{"Code", "Message", "RequestId", "TemplateCode", "TemplateName",
        "TemplateContent", "TemplateType", "TemplateStatus", "Reason", "CreateDate"}``."""
        request = sms_models.QuerySmsTemplateRequest(template_code=template_code)
        return await self._call("QuerySmsTemplate", self._sdk.query_sms_template_async, request, count=0)

    async def query_sms_sign(self, sign_name: str) -> dict[str, Any]:
        """QuerySmsSign: ``{"Code", "Message", "RequestId", "SignName", "SignStatus", "Reason", "CreateDate"}``."""
        request = sms_models.QuerySmsSignRequest(sign_name=sign_name)
        return await self._call("QuerySmsSign", self._sdk.query_sms_sign_async, request, count=0)

    async def query_send_statistics(self, is_globe: int, start_date: str, end_date: str, *, page_index: int = 1,
                                    page_size: int = 50) -> dict[str, Any]:
        """QuerySendStatistics (the SDK's ``QuerySendStatisticsRequest``): ``is_globe`` 1 domestic, 2
        international; dates ``yyyyMMdd`` (China time). Returns ``{"Code", "Message", "RequestId",
        "Data": {"TotalSize", "TargetList": [{"SendDate", "TotalCount", "RespondedSuccessCount",
        "RespondedFailCount", "NoRespondedCount"}]}}``."""
        request = sms_models.QuerySendStatisticsRequest(is_globe=is_globe, start_date=start_date, end_date=end_date,
                                                        page_index=page_index, page_size=page_size)
        return await self._call("QuerySendStatistics", self._sdk.query_send_statistics_async, request, count=0)

    # --- internals ----------------------------------------------------------------------------

    async def _call(self, action: str, method: Callable[[Any], Awaitable[Any]], request: Any, *,
                    count: int) -> dict[str, Any]:
        try:
            response = await method(request)
        except AlibabaCloudException as exc:
            data = exc.data if isinstance(exc.data, dict) else {}
            code = str(data.get("Code") or exc.code or "Unknown")
            request_id = str(data.get("RequestId") or exc.request_id or "")
            if request_id == "None":
                request_id = ""
            log.warning("aliyun_call_failed", action=action, code=code, status=exc.status_code,
                        request_id=request_id)
            raise AliyunApiError(code, _clean(data.get("Message") or exc.message), request_id,
                                 status=exc.status_code, body=data or None) from None
        except (TeaException, ValidateException, DaraValidateException) as exc:
            inner = getattr(exc, "inner_exception", None) or exc
            code = f"SDK.{type(inner).__name__}"
            log.warning("aliyun_call_failed", action=action, code=code)
            raise AliyunApiError(code, f"{action} failed: {type(inner).__name__}") from None
        body = response.body.to_map() if response.body is not None else {}
        code = str(body.get("Code") or "")
        request_id = str(body.get("RequestId") or "")
        if code != "OK":
            log.warning("aliyun_call_refused", action=action, code=code or "missing", request_id=request_id)
            raise AliyunApiError(code or "Unknown", _clean(body.get("Message")), request_id,
                                 status=response.status_code, body=body)
        log.debug("aliyun_call_ok", action=action, numbers=count, request_id=request_id)
        return body
