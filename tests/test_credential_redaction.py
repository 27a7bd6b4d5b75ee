"""Credentials a request carried never reach a log line, whatever their format.

A real proxy process in front of an upstream that echoes the credentials it received
into 401 and 500 bodies (and its X-Request-ID), as misconfigured gateways and some
providers do.  None of these values matches a known key pattern except the one in the
path, so only redaction by value can catch them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from conftest import proxy_process, run_server, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Synthetic values: never real credentials.
AZURE_KEY = "3f9c2a7b1e4d6f8a0b5c7d9e2f4a6b8c"  # Azure OpenAI's format: 32 hex digits
AZURE_KEY_2 = "8e1d4c7b0a3f6e9d2c5b8a1f4e7d0c3b"
BASIC_USER = "deploy-bot-7"
BASIC_PASSWORD = "Tr0ub4dor-and-3"
BASIC = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
SIG_SENT = "Xy7%2BQp3%2FLm9%3D%3D"
ACCESS_TOKEN = "at.Q2hhbmdlTWUxMjM0NTY3"
PATH_KEY = "sk-proj-" + "Zx9Qw2Lm4Np6Rt8Vb1Cd3Fg5Hj7Kl0Mn2Pq4Rs6Tu8Wx0Yz"

# Each case: how the request carries its credential, and the raw values that must not
# appear in any log line.
CASES: dict[str, dict[str, Any]] = {
    "azure_bearer": {"headers": {"authorization": f"Bearer {AZURE_KEY}"}, "raw": [AZURE_KEY]},
    "azure_api_key": {
        "headers": {
            "api-key": AZURE_KEY_2,
            "x-pulse-user": AZURE_KEY_2,
            "x-pulse-tags": f"team={AZURE_KEY_2}",
        },
        "raw": [AZURE_KEY_2],
    },
    "basic": {
        "headers": {"authorization": f"Basic {BASIC}"},
        "raw": [BASIC, BASIC_USER, BASIC_PASSWORD],
    },
    "query": {
        "query": f"sig={SIG_SENT}&access_token={ACCESS_TOKEN}&api-version=2024-06-01",
        "raw": [SIG_SENT, unquote(SIG_SENT), ACCESS_TOKEN],
    },
    "path": {"path": f"/models/{PATH_KEY}", "raw": [PATH_KEY]},
}


def _echo(request: Request) -> tuple[str, str]:
    """What a careless upstream repeats back: the credential without its scheme word
    (so no 'Bearer …' pattern can catch it), Basic decoded, the query raw and decoded."""
    parts = []
    authorization = request.headers.get("authorization", "")
    if authorization:
        credential = authorization.partition(" ")[2]
        parts.append(f"Incorrect API key provided: {credential}.")
        if authorization.startswith("Basic "):
            parts.append(f"User {base64.b64decode(credential).decode()} is not allowed.")
    if request.headers.get("api-key"):
        parts.append(f"Access denied for key {request.headers['api-key']}.")
    if request.url.query:
        parts.append(f"Bad query {request.url.query} ({unquote(request.url.query)}).")
    parts.append(f"No such resource {request.url.path}.")
    request_id = authorization.partition(" ")[2] or request.headers.get("api-key", "") or "req-1"
    return " ".join(parts), f"req-{request_id}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, list[bytes]]]:
    sent: list[bytes] = []

    async def echo(request: Request) -> Response:
        message, request_id = _echo(request)
        status = int(request.headers.get("x-echo-status", "401"))
        error_type = "invalid_request_error" if status == 401 else "server_error"
        body = httpx.Response(
            200, json={"error": {"message": message, "type": error_type, "code": None}}
        ).content
        sent.append(body)
        return Response(
            body, status, media_type="application/json", headers={"x-request-id": request_id}
        )

    app = Starlette(routes=[Route("/v1/{rest:path}", echo, methods=["GET", "POST"])])
    with run_server(app) as url:
        yield url, sent


def test_every_credential_the_request_carried_is_redacted_by_value(
    upstream: tuple[str, list[bytes]],
) -> None:
    """Azure keys in Authorization and api-key, Basic credentials (encoded and decoded), sig and access_token query values and a key in the path, echoed by the upstream into 401 and 500 bodies, appear in no log line, while the client gets the upstream's body untouched."""
    url, sent = upstream
    answers: list[tuple[str, int, bytes, bytes]] = []
    with proxy_process("--upstream", url + "/v1") as proc:
        with httpx.Client(base_url=proc.url + "/v1", timeout=30) as client:
            for name, case in CASES.items():
                for status in (401, 500):
                    path = case.get("path", "/chat/completions")
                    target = path + ("?" + case["query"] if "query" in case else "")
                    response = client.post(
                        target,
                        headers={**case.get("headers", {}), "x-echo-status": str(status)},
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                    )
                    assert response.status_code == status
                    answers.append((name, status, response.content, sent[-1]))
        wait_until(lambda: len(proc.events("llm.request")) == len(answers), timeout=30)
        code, stderr = proc.stop()
        assert code == 0, stderr

    # The client's answer is the upstream's, byte for byte, credentials and all.
    for _, _, received, upstream_sent in answers:
        assert received == upstream_sent
    assert any(AZURE_KEY.encode() in received for _, _, received, _ in answers)

    everything = b"".join(proc.raw) + stderr
    for name, case in CASES.items():
        for raw in case["raw"]:
            assert raw.encode() not in everything, (name, raw)

    events = {}
    for event in proc.events("llm.request"):
        events.setdefault(event["status_code"], []).append(event)
    assert len(events[401]) == len(events[500]) == len(CASES)
    for status, group in events.items():
        for (name, _, _, _), event in zip(
            [a for a in answers if a[1] == status], group, strict=True
        ):
            assert "[SECRET]" in event["error_message"], (name, event["error_message"])
            if name == "path":
                assert event["path"] == "/v1/models/[SECRET]"
            if name in ("azure_bearer", "azure_api_key", "basic"):
                assert event["upstream_request_id"] == "req-[SECRET]"
                assert event["api_key_hash"]
            if name == "azure_api_key":
                assert event["user"] == "[SECRET]" and event["tags"] == {"team": "[SECRET]"}


def test_short_values_are_left_alone_and_longer_ones_in_every_form() -> None:
    """Values under eight characters are not redacted (they would shred any text); a
    longer one goes in its sent, decoded and encoded forms, a Basic pair whole and in parts."""
    from pulse_proxy.accounting.redaction import credential_values, value_redactor

    secrets = credential_values(
        f"Bearer short\nBasic {BASIC}",
        b"key=1234&client_secret=a%2Fb%2Bc%3Dd-long&page=2",
        ["sk-configured-key-1"],
    )
    redact = value_redactor(secrets)
    assert redact("short page 1234") == "short page 1234"
    assert redact("a/b+c=d-long a%2Fb%2Bc%3Dd-long") == "[SECRET] [SECRET]"
    assert redact(f"{BASIC_USER}:{BASIC_PASSWORD} {BASIC_PASSWORD}") == "[SECRET] [SECRET]"
    assert redact("upstream saw sk-configured-key-1") == "upstream saw [SECRET]"
