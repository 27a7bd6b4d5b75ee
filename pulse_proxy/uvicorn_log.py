"""uvicorn's own log, kept to what the proxy does not already report.

uvicorn logs any exception that escapes the app, with its traceback, on
``uvicorn.error``.  A stream the proxy aborts on purpose (the upstream broke mid-body,
so the client's connection must be cut rather than ended cleanly) escapes as
:class:`~pulse_proxy.proxy.forward.StreamAborted`, and is already recorded in its
``llm.request`` event: it should not add a traceback as well.

Changing a logger is a change to the whole process, so it happens when an app is
created (:func:`install`), never as a side effect of importing a module.
"""

from __future__ import annotations

import logging

from pulse_proxy.proxy.forward import StreamAborted

# The logger uvicorn reports errors on, exceptions escaping the app among them.
LOGGER = "uvicorn.error"


class DropStreamAborted(logging.Filter):
    """Drops a record whose exception is a deliberately aborted stream."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, StreamAborted)


def install() -> None:
    """Add :class:`DropStreamAborted` to uvicorn's error logger, once: every app a
    process creates (tests create many) calls this, and the logger keeps one filter."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, DropStreamAborted) for f in logger.filters):
        logger.addFilter(DropStreamAborted())
