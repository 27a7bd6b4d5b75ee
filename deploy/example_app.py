"""A stand-in for your application: it knows nothing of LLM Pulse but OPENAI_BASE_URL.

Every few seconds it asks for a chat completion, alternately plain and streamed, the
way any OpenAI SDK would, and prints one line per answer.  Only the standard library,
so it runs in a bare ``python:3.11-slim`` container (see docker-compose.yml).

    OPENAI_BASE_URL  where to send requests (the sidecar: http://pulse:8080/v1)
    OPENAI_API_KEY   sent as a bearer token when set; leave it unset to let the
                     sidecar add its PULSE_UPSTREAM_API_KEY
    OPENAI_MODEL     model name (gpt-4o-mini)
    APP_INTERVAL_S   pause between requests (5)
    APP_REQUESTS     stop after this many requests (0: run until stopped)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

QUESTIONS = (
    "What is the capital of France?",
    "Write a haiku about observability.",
    "Explain time to first token in one sentence.",
)


def ask(base_url: str, model: str, question: str, stream: bool) -> str:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": question}]}
    if stream:
        body["stream"] = True
    headers = {"Content-Type": "application/json", "X-Pulse-Tags": "app=example"}
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(  # noqa: S310 - the user's own http(s) base URL
        base_url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(), headers=headers
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        if not stream:
            answer = json.load(response)
            return str(answer["choices"][0]["message"]["content"])
        parts = []
        for raw in response:  # server-sent events, one "data: {...}" line per chunk
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
        return "".join(parts)


def main() -> int:
    base_url = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    interval = float(os.environ.get("APP_INTERVAL_S", "5"))
    limit = int(os.environ.get("APP_REQUESTS", "0"))
    # PID 1 in its container: without a handler, SIGTERM would be ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sent = 0
    while not limit or sent < limit:
        stream = sent % 2 == 1
        try:
            answer = ask(base_url, model, QUESTIONS[sent % len(QUESTIONS)], stream)
            print(f"app: {'stream' if stream else 'plain'} answer, {len(answer)} chars", flush=True)
        except (OSError, ValueError, KeyError) as exc:
            print(f"app: request failed: {exc}", file=sys.stderr, flush=True)
        sent += 1
        if not limit or sent < limit:
            time.sleep(interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
