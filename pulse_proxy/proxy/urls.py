"""Base URLs from configuration, and the one way a request's path reaches them.

A request never contributes an authority: scheme, host and port come from the
configured base URL, parsed once at start-up; the request only adds a path (checked
and normalised here) and its query string.  Concatenating strings instead let a path
such as ``/v1%2f@other-host/`` turn the configured host into user information.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from yarl import URL

# The proxy's own route; everything a client asks for must stay below it.
ROUTE_PREFIX = "/v1"


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


_MAX_CACHED_PATHS = 256


class UpstreamBase:
    """A configured upstream base URL, split once so each request only adds a path.

    :meth:`url_for` builds the target from parts: the authority (user information,
    host, port) is the configured one whatever the request path holds, and the path
    and query are passed to yarl already encoded, so they travel exactly as given.
    """

    __slots__ = ("_plain", "address", "authority", "host", "path", "port", "scheme", "url")

    def __init__(self, url: str) -> None:
        parsed = URL(url.rstrip("/"), encoded=True)
        if parsed.scheme not in ("http", "https") or not parsed.raw_host:
            raise ValueError(f"not an http(s) base URL: {display_url(url)}")
        self.url = parsed
        self.scheme = parsed.scheme
        self.authority = parsed.raw_authority
        self.host = parsed.raw_host
        self.port = parsed.port  # explicit, or the scheme's default
        self.path = parsed.raw_path.rstrip("/")
        self._plain: dict[str, URL] = {}
        # ``host:port`` as connections are made: safe to print (no user information),
        # and what an operator checks first when the upstream cannot be reached.
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.address = f"{host}:{self.port}"

    def url_for(self, sub_path: str, query: str = "") -> URL:
        """The upstream URL for a request path below ``/v1`` (as :func:`upstream_path`
        returns it) and a raw query string.

        Built from parts, so nothing in the path can change the authority.  Clients use
        a handful of paths without a query, so those URLs are kept (a bounded table:
        once full, new paths are built each time rather than evicting)."""
        if not query:
            cached = self._plain.get(sub_path)
            if cached is not None:
                return cached
        url = URL.build(
            scheme=self.scheme,
            authority=self.authority,
            path=self.path + sub_path,
            query_string=query,
            encoded=True,
        )
        if not query and len(self._plain) < _MAX_CACHED_PATHS:
            self._plain[sub_path] = url
        return url


def upstream_path(raw_path: str) -> str | None:
    """The part of a raw request path below ``/v1`` to send upstream, or ``None``
    when the path is refused.

    Refused: a path that, once normalised as RFC 3986 §5.2.4 says (dot segments
    removed, ``%2e`` read as ``.``), would leave ``/v1/``; a segment holding an encoded
    slash, a backslash (raw or ``%5c``) or an ``@`` (raw or ``%40``).  Servers and CDNs
    in front of an upstream disagree on how to read those, so any of them could make
    the upstream serve something outside the configured base URL.

    Almost every path has none of ``%``, ``\\``, ``@`` or ``/.``: for those a few
    substring tests decide, and only the rest pays for the full normalisation.
    """
    if (
        "%" not in raw_path
        and "/." not in raw_path
        and "\\" not in raw_path
        and "@" not in raw_path
    ):
        if raw_path.startswith("/v1/") or raw_path == ROUTE_PREFIX:
            return raw_path[3:]
        return None
    normalised = normalise_path(raw_path)
    if normalised is None:
        return None
    if normalised.startswith("/v1/") or normalised == ROUTE_PREFIX:
        return normalised[3:]
    return None


def normalise_path(raw_path: str) -> str | None:
    """``raw_path`` with its dot segments removed (RFC 3986 §5.2.4, ``%2e`` decoded,
    every other percent-encoding kept as sent); ``None`` if it is not an absolute
    path or a segment holds an encoded slash, a backslash or an ``@``."""
    if not raw_path.startswith("/") or "\\" in raw_path or "@" in raw_path:
        return None
    segments = raw_path.split("/")
    last = len(segments) - 1
    out = [""]
    for index in range(1, last + 1):
        segment = segments[index]
        if "%" in segment:
            lowered = segment.lower()
            if "%2f" in lowered or "%5c" in lowered or "%40" in lowered:
                return None
            segment = segment.replace("%2e", ".").replace("%2E", ".")
        if segment == "." or segment == "..":
            if segment == ".." and len(out) > 1:
                out.pop()
            if index == last:
                out.append("")  # "/a/." is "/a/", and "/a/b/.." is "/a/"
            continue
        out.append(segment)
    return "/".join(out) if len(out) > 1 else "/"


def _addresses(host: str, port: int) -> set[str]:
    """Every address ``host`` resolves to; none when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    return {str(info[4][0]) for info in infos}


def _is_local(address: str) -> bool:
    """Whether this machine owns ``address`` (binding to it only works if so)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def points_at_self(upstream: UpstreamBase, listen_host: str, listen_port: int) -> bool:
    """Whether ``upstream`` is the address this proxy listens on, so every request
    would come straight back in.  Only a matching port costs a name lookup."""
    if listen_port == 0 or upstream.port != listen_port:
        return False
    targets = _addresses(upstream.host, listen_port)
    if listen_host in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        return any(_is_local(address) for address in targets)
    return bool(targets & _addresses(listen_host, listen_port))
