"""Addresses as they may be shown: a URL without its credentials."""

from __future__ import annotations

import urllib.parse

SECRET_PARAMS = ("password", "secret", "token", "key")  # query parameters whose values are hidden too


def redact(url: str) -> str:
    """The URL with user:password (and any password-like query parameter) replaced by ***."""
    original = parsed = urllib.parse.urlsplit(url)
    if parsed.username or parsed.password:
        parsed = parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2])
    if parsed.query:
        pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
        hidden = [(k, "***" if _secret(k) else v) for k, v in pairs]
        if hidden != pairs:
            parsed = parsed._replace(query=urllib.parse.urlencode(hidden, safe="*"))
    shown = url if parsed == original else urllib.parse.urlunsplit(parsed)  # chdb:///path stays as written
    scheme, sep, rest = shown.partition("://")
    if sep and "@" in rest.removeprefix("***@"):  # a password with an unencoded # / ? @ that the parse missed
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return shown


def secrets_of(url: str) -> list[str]:
    """The credentials a URL carries, as written and decoded, to be scrubbed from any text shown with it."""
    _, sep, rest = url.partition("://")
    userinfo = rest.rpartition("@")[0] if sep else ""
    password = userinfo.partition(":")[2]
    found = [userinfo if password else "", password, urllib.parse.unquote(password)]
    found += [v for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query) if _secret(k)]
    return sorted({s for s in found if s}, key=len, reverse=True)  # the longest first: none is left half-scrubbed


def _secret(param: str) -> bool:
    return any(word in param.lower() for word in SECRET_PARAMS)
