"""LLM Pulse: an observability sidecar for OpenAI-compatible APIs."""

__version__ = "0.1.0"
