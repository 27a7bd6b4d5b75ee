"""The request path: receive, forward, relay, hand off a capture."""
