# syntax=docker/dockerfile:1
#
# LLM Pulse, the sidecar image.
#
#   docker build -t llm-pulse .
#   docker run --rm -p 8080:8080 -e PULSE_UPSTREAM_URL=https://api.openai.com/v1 llm-pulse
#
# Two stages: the builder installs the locked dependencies (hashes checked) and the
# project's wheel into a virtual environment at /opt/venv; the runtime stage is a fresh
# slim Python with only that environment copied in.  No compiler, no source tree, no
# tests, no pip cache in the final image.
#
# The base is pinned to a patch release and Debian suite rather than a floating
# `3.11-slim`.  Pin the digest too (`python:3.11.14-slim-bookworm@sha256:…`) in the
# registry you build from: a digest is per registry mirror and cannot be looked up
# offline, so it is an argument rather than a guess written here.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
RUN python -m venv /opt/venv

# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
# Every wheel is checked against the hashes in requirements.lock (setuptools included,
# which builds our wheel below without fetching anything unpinned).
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock

# The project itself, as a wheel: the tokenizer vocabularies (pulse_proxy/_vocab) and
# the price table are package data, so they travel inside it; nothing is downloaded
# at run time.
COPY pyproject.toml README.md ./
COPY pulse_proxy ./pulse_proxy
COPY mock_upstream ./mock_upstream
RUN /opt/venv/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/venv/bin/pip install --no-deps /tmp/dist/llm_pulse-*.whl


FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="llm-pulse" \
      org.opencontainers.image.description="Observability sidecar for OpenAI-compatible LLM APIs" \
      org.opencontainers.image.licenses="MIT"

# A fixed, unprivileged uid/gid, so Kubernetes' runAsNonRoot can verify it and volume
# permissions can be planned.  No home directory and no login shell: nothing writes.
RUN groupadd --system --gid 10001 pulse \
    && useradd --system --uid 10001 --gid pulse --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pulse

COPY --from=builder /opt/venv /opt/venv

# PULSE_HOST: listen on every interface of the container (the default, 127.0.0.1, is
#   right on a laptop and wrong in a container, where the app connects from outside).
# PYTHONDONTWRITEBYTECODE: the bytecode was compiled at install; write nothing more.
ENV PATH=/opt/venv/bin:$PATH \
    PULSE_HOST=0.0.0.0 \
    PULSE_PORT=8080 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# tiktoken otherwise copies each vocabulary it loads into /tmp/data-gym-cache; the
# bundled files need no cache, and with none the root file system can be read-only.
# DL3064 ("sensitive data in ENV") fires on the substring TOKEN in TIKTOKEN: this is a
# directory setting, empty, not a secret.
# hadolint ignore=DL3064
ENV TIKTOKEN_CACHE_DIR=""

USER 10001:10001
WORKDIR /
EXPOSE 8080

# GET /healthz on the port the proxy was configured with (PULSE_PORT, PULSE_CONFIG), exit
# 0 or 1.  Slim images have no curl; this module imports only the standard library
# (~0.15 s of CPU per check, against ~1 s for the full `pulse-proxy` command line).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "pulse_proxy.ops.healthcheck"]

# SIGTERM (docker stop, Kubernetes) starts a graceful shutdown: stop accepting, let
# in-flight requests and streams finish for server.shutdown_grace_s (30 s), flush
# every pending llm.request event, write pulse.stopped, exit 0.  Give the container
# more than that before SIGKILL: `docker stop -t 45`, compose `stop_grace_period`,
# Kubernetes `terminationGracePeriodSeconds` (see deploy/).
STOPSIGNAL SIGTERM

# Exec form: the proxy is PID 1 and receives the signal itself (no shell in between).
# It installs its own SIGTERM/SIGINT handlers, so PID 1's "no default signal action"
# rule does not matter, and it waits for each child it starts (the accounting process,
# the bundled mock), so no zombie is left for an init to reap: no tini needed.
CMD ["pulse-proxy", "serve"]
