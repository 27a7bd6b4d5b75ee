"""Records for tests that call sinks, statistics and alerts directly, with no HTTP.

``make_exchange()`` is a typical successful, non-streamed chat request with upstream
usage; pass overrides for what a test is about (mitmproxy's ``tflow()`` habit).
"""

from __future__ import annotations

import itertools
from typing import Any

from pulse_proxy.records import AlertEvent, Exchange

_ids = itertools.count(1)


def make_exchange(**overrides: Any) -> Exchange:
    fields: dict[str, Any] = {
        "request_id": f"req-{next(_ids)}",
        "method": "POST",
        "path": "/v1/chat/completions",
        "endpoint": "chat",
        "model": "gpt-4o",
        "response_model": "gpt-4o-2024-08-06",
        "upstream": "mock",
        "status_code": 200,
        "outcome": "success",
        "stream": False,
        "latency_ms": 812.5,
        "upstream_ms": 810.0,
        "overhead_ms": 2.5,
        "prompt_tokens": 42,
        "completion_tokens": 17,
        "total_tokens": 59,
        "token_source": "upstream",
        "prompt_tokens_local": 41,
        "prompt_chars": 160,
        "messages": 2,
        "finish_reason": "stop",
        "cost_usd": 0.000275,
        "api_key_hash": "k-1a2b3c4d",
        "bytes_in": 300,
        "bytes_out": 600,
    }
    fields.update(overrides)
    return Exchange(**fields)


def make_alert(**overrides: Any) -> AlertEvent:
    fields: dict[str, Any] = {
        "event": "alert.fired",
        "alert": "high_latency",
        "severity": "warning",
        "metric": "latency_ms",
        "stat": "p95",
        "value": 2450.0,
        "threshold": 2000.0,
        "window_s": 300.0,
        "message": "high_latency: p95 latency_ms over the last 5m is 2,450 ms, above the threshold of 2,000 ms (40 samples)",
        "fired_at": "2025-01-01T12:00:00.000Z",
        "resolved_at": None,
        "duration_s": None,
        "labels": {"team": "llm"},
    }
    fields.update(overrides)
    return AlertEvent(**fields)
