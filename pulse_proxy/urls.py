"""Base URLs from configuration: validated once, printed without their secrets."""

from __future__ import annotations

from urllib.parse import urlsplit


def http_base_url(value: str, expected: str) -> str:
    """``value`` as a base URL paths are appended to: http(s), a host, no query or
    fragment (they would end up in the middle of every request URL), no trailing ``/``.
    ``expected`` completes the message "must be …" when it is not one."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be {expected}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value.rstrip("/")


def display_url(url: str) -> str:
    """A URL safe to print: any ``user:password@`` and ``key=`` query value masked."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        parts = parts._replace(netloc=f"***@{host}")
    if parts.query:
        query = "&".join(
            f"{k}=***" if k.lower() in ("key", "api_key", "api-key", "token") else f"{k}{sep}{v}"
            for k, sep, v in (item.partition("=") for item in parts.query.split("&"))
        )
        parts = parts._replace(query=query)
    return parts.geturl()
