"""Errors the proxy itself answers with, in OpenAI's shape.

SDKs map status codes to exception classes and read ``error.message``; using the same
body shape means an application's existing error handling keeps working, and
``code`` tells an operator it was the proxy, not the provider, that answered.
"""

from __future__ import annotations

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


def openai_error_body(message: str, code: str, *, status: int = 502, param: str | None = None) -> bytes:
    error_type = _TYPES.get(status, "api_error")
    if code in ("request_too_large", "prompt_blocked"):
        error_type = "invalid_request_error"
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )
