"""LLM Pulse: an observability sidecar for OpenAI-compatible APIs."""

__version__ = "0.2.0"
