"""Errors the proxy itself answers with, in OpenAI's shape.

SDKs map status codes to exception classes and read ``error.message``; using the same
body shape means an application's existing error handling keeps working, and
``code`` tells an operator it was the proxy, not the provider, that answered.  When
an upstream failed, :func:`upstream_failure` says why in words, not class names.
"""

from __future__ import annotations

import errno
import os

import aiohttp
import orjson

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    502: "api_error",
    503: "api_error",
    504: "api_error",
}


def openai_error_body(
    message: str, code: str, *, status: int = 502, param: str | None = None
) -> bytes:
    error_type = _TYPES.get(status, "api_error")
    if code in ("request_too_large", "prompt_blocked"):
        error_type = "invalid_request_error"
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


# errno values worth naming in words an operator recognises; any other errno is
# described by the C library's own text (os.strerror).
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection reset",
    errno.ETIMEDOUT: "timed out connecting",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def upstream_failure(exc: BaseException) -> str:
    """What went wrong talking to the upstream, in words: "connection refused",
    "DNS lookup failed", "timed out connecting"...

    Built from the exception's class and errno only, never from its text, which can
    hold a URL (and so whatever credentials the URL carries)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "DNS lookup failed"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate not trusted"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return "TLS certificate fingerprint mismatch"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS error"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "timed out reading"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the upstream closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body cut short"
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return "connection reset"
    code = exc.errno if isinstance(exc, OSError) else None
    if code:
        return _ERRNO_WORDS.get(code) or os.strerror(code).lower()
    return f"connection failed, {type(exc).__name__}"
