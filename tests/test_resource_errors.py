"""A resource's own ``error`` field is not a failed request; a failed generation is.

OpenAI's fine-tuning jobs, eval runs, video jobs and batches carry an ``error`` (or
``errors``) attribute describing the resource's state: fetching a failed job is a
successful request and must not feed the error rate.  A 200 chat completion with an
``error``, a Responses object with ``status: failed`` and an error event inside a
stream are failed generations.  Every body below validates against the vendored
``openapi.yaml``, is served by a real upstream and passes through a real proxy.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from conftest import RunningProxy, run_server, start_proxy
from openapi_schemas import OpenAPISchemas
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mock_upstream import payloads

CREATED = 1_735_000_000
GEN = payloads.generate(7, 4)


def fine_tuning_job() -> dict[str, Any]:
    return {
        "object": "fine_tuning.job",
        "id": "ftjob-abc123",
        "model": "gpt-4o-mini-2024-07-18",
        "created_at": CREATED,
        "finished_at": None,
        "fine_tuned_model": None,
        "organization_id": "org-123",
        "result_files": [],
        "status": "failed",
        "validation_file": None,
        "training_file": "file-abc123",
        "hyperparameters": {
            "n_epochs": "auto",
            "batch_size": "auto",
            "learning_rate_multiplier": "auto",
        },
        "trained_tokens": None,
        "seed": 42,
        "error": {
            "code": "invalid_training_file",
            "param": "training_file",
            "message": "The training file has too few examples.",
        },
    }


def eval_run() -> dict[str, Any]:
    return {
        "object": "eval.run",
        "id": "evalrun_abc",
        "eval_id": "eval_abc",
        "status": "failed",
        "model": "gpt-4o-mini",
        "name": "nightly",
        "created_at": CREATED,
        "report_url": "https://platform.openai.com/evaluations/eval_abc?run_id=evalrun_abc",
        "result_counts": {"total": 0, "errored": 0, "failed": 0, "passed": 0},
        "per_model_usage": [],
        "per_testing_criteria_results": [],
        "data_source": {"type": "jsonl", "source": {"type": "file_id", "id": "file-abc"}},
        "metadata": {},
        "error": {
            "code": "internal_error",
            "message": "The eval run failed due to an internal error.",
        },
    }


def video_job() -> dict[str, Any]:
    return {
        "id": "video_abc",
        "object": "video",
        "model": "sora-2",
        "status": "failed",
        "progress": 0,
        "created_at": CREATED,
        "completed_at": None,
        "expires_at": None,
        "prompt": "A calm lake",
        "size": "1280x720",
        "seconds": "4",
        "remixed_from_video_id": None,
        "error": {"code": "moderation_blocked", "message": "The prompt was blocked."},
    }


def failed_batch() -> dict[str, Any]:
    return {
        "id": "batch_abc",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "input_file_id": "file-abc",
        "completion_window": "24h",
        "status": "failed",
        "created_at": CREATED,
        "failed_at": CREATED + 5,
        "errors": {
            "object": "list",
            "data": [
                {
                    "code": "invalid_json_line",
                    "message": "Line 3 is not valid JSON.",
                    "param": None,
                    "line": 3,
                }
            ],
        },
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
    }


def failed_response() -> dict[str, Any]:
    body = payloads.response_object("resp_abc", "gpt-4o", {}, status="failed", output=[])
    body["error"] = {"code": "server_error", "message": "The model failed to generate."}
    return body


def chat_with_error() -> dict[str, Any]:
    """A 200 chat completion that says the generation failed (as some gateways send it)."""
    body = payloads.chat_completion("chatcmpl-abc", "gpt-4o", GEN, None)
    body["error"] = {
        "message": "Upstream provider failed.",
        "type": "server_error",
        "param": None,
        "code": "provider_error",
    }
    return body


def chat_stream_with_error() -> bytes:
    first = payloads.chat_chunk("chatcmpl-abc", "gpt-4o", {"role": "assistant", "content": "Hel"})
    error = payloads.error("The stream was interrupted.", "server_error", code="stream_interrupted")
    return payloads.sse(first) + payloads.sse(error)


def response_failed_event() -> dict[str, Any]:
    return {"type": "response.failed", "sequence_number": 1, "response": failed_response()}


# path -> (status, schema it must validate against, body)
JSON_ROUTES: dict[str, tuple[int, str, dict[str, Any]]] = {
    "/v1/fine_tuning/jobs/ftjob-abc123": (200, "FineTuningJob", fine_tuning_job()),
    "/v1/evals/eval_abc/runs/evalrun_abc": (200, "EvalRun", eval_run()),
    "/v1/videos/video_abc": (200, "VideoResource", video_job()),
    "/v1/batches": (201, "Batch", failed_batch()),
    "/v1/responses": (200, "Response", failed_response()),
    "/v1/chat/completions": (200, "CreateChatCompletionResponse", chat_with_error()),
    "/v1/models": (200, "ListModelsResponse", payloads.model_list()),  # the readiness probe
}
# path -> the stream answered when the request body asks for ``stream: true``
STREAM_ROUTES: dict[str, bytes] = {
    "/v1/chat/completions": chat_stream_with_error(),
    "/v1/responses": payloads.sse(response_failed_event(), "response.failed"),
}


async def serve(request: Request) -> Response:
    path = request.url.path
    raw = await request.body()
    if raw and orjson.loads(raw).get("stream") is True:
        return Response(STREAM_ROUTES[path], media_type="text/event-stream")
    status, _, body = JSON_ROUTES[path]
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    with run_server(
        Starlette(routes=[Route("/{path:path}", serve, methods=["GET", "POST"])])
    ) as url:
        yield url


@pytest.fixture
def proxy(upstream_url: str) -> Iterator[RunningProxy]:
    """A fresh proxy (and so a fresh record) in front of the module's upstream."""
    with start_proxy(upstream_url + "/v1") as running:
        yield running


def test_bodies_have_openai_shapes(schemas: OpenAPISchemas) -> None:
    """Each body served below is what OpenAI's own schema describes, error field included."""
    for _, schema, body in JSON_ROUTES.values():
        schemas.validate(schema, body)
    schemas.validate("ResponseFailedEvent", response_failed_event())
    schemas.validate("ErrorResponse", orjson.loads(chat_stream_with_error().split(b"data: ")[-1]))


def test_a_resource_error_is_not_a_failed_request(proxy: RunningProxy) -> None:
    """A failed fine-tuning job, eval run, video job or batch, fetched with the SDK, is a success."""
    client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-test", max_retries=0)
    assert client.fine_tuning.jobs.retrieve("ftjob-abc123").error is not None
    assert client.evals.runs.retrieve("evalrun_abc", eval_id="eval_abc").error is not None
    with warnings.catch_warnings():  # the SDK warns that the Sora API is being retired
        warnings.simplefilter("ignore", DeprecationWarning)
        assert client.videos.retrieve("video_abc").error is not None
    batch = client.batches.create(
        completion_window="24h", endpoint="/v1/chat/completions", input_file_id="file-abc"
    )
    assert batch.errors is not None
    events = proxy.wait_for(4)
    assert [(e.status_code, e.outcome, e.error_type, e.error_message) for e in events] == [
        (200, "success", None, None),
        (200, "success", None, None),
        (200, "success", None, None),
        (201, "success", None, None),
    ]
    metrics = httpx.get(proxy.url + "/metrics").text
    assert "llm_request_errors_total{" not in metrics


def test_a_failed_generation_is_a_failed_request(proxy: RunningProxy) -> None:
    """A Responses object with status failed, a 200 chat body with an error, and error events
    inside a chat stream and a Responses stream are each an upstream_error with its code."""
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=proxy.base_url) as client:
        for path, body in (
            ("/responses", {"model": "gpt-4o", "input": "hi"}),
            ("/chat/completions", chat),
            ("/chat/completions", {**chat, "stream": True}),
            ("/responses", {"model": "gpt-4o", "input": "hi", "stream": True}),
        ):
            assert client.post(path, json=body).status_code == 200
    events = proxy.wait_for(4)
    assert [(e.status_code, e.outcome, e.error_type) for e in events] == [
        (200, "upstream_error", "server_error"),
        (200, "upstream_error", "provider_error"),
        (200, "upstream_error", "stream_interrupted"),
        (200, "upstream_error", "server_error"),
    ]
    assert all(e.error_message for e in events)
