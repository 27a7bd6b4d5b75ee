"""What files records into the ring: a sink, fed the batches every sink gets.

The batch already carries each request's ``llm.request`` line, rendered by the
accounting process for the log (:class:`~pulse_proxy.sinks.log.LineRenderer`), so by
default the ring keeps those very bytes: the records are the event, and filing costs
the event loop a ``deque.extend``.  Two settings change what the log's lines are, and
so what is filed:

- ``accounting.log_content``: the line carries ``prompt_text`` and
  ``completion_text``; they are taken out (the line parsed and rendered again
  without them), since the ring is served to whoever holds the admin token and kept
  in memory, where text has no business.
- ``server.log_format: console``: the lines are not JSON; the sink then asks for the
  exchanges and renders each as the JSON line the event would be.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import orjson

from pulse_proxy.recent.ring import RequestRing
from pulse_proxy.records import AlertEvent, Batch, Exchange
from pulse_proxy.settings import Settings
from pulse_proxy.sinks import Rendered
from pulse_proxy.sinks.log import LineRenderer

# Event fields that hold request or response text (only with accounting.log_content).
TEXT_FIELDS = ("prompt_text", "completion_text")
# How both keys end in a line.  Only a key can hold it: a quote inside a JSON string
# is escaped, so no value, whatever a client sent, has ``_text":`` in its bytes.
_TEXT_KEY_END = b'_text":'


def without_text(line: bytes) -> bytes:
    """``line`` with no prompt or completion text: unchanged when it has none (the
    default), else parsed and rendered again without those fields, keys in order."""
    if _TEXT_KEY_END not in line:
        return line
    event = orjson.loads(line)
    for name in TEXT_FIELDS:
        event.pop(name, None)
    return orjson.dumps(event)


class RecentRequests:
    """The sink that keeps the last ``dashboard.recent_requests`` records."""

    def __init__(self, ring: RequestRing, *, json_lines: bool = True, text: bool = False) -> None:
        """``json_lines``: the batch's lines are JSON (``server.log_format: json``);
        ``text``: they may carry prompt and completion text (``accounting.log_content``)."""
        self.ring = ring
        self._json_lines = json_lines
        self._text = text
        self._renderer = LineRenderer("json")

    @classmethod
    def from_settings(cls, settings: Settings) -> RecentRequests:
        return cls(
            RequestRing(settings.dashboard.recent_requests),
            json_lines=settings.server.log_format == "json",
            text=settings.accounting.log_content,
        )

    def takes_exchanges(self, rendered: Rendered) -> bool:
        return not self._json_lines

    def write(self, batch: Batch[Any]) -> None:
        if not self._json_lines:
            self.ring.file(self._render(batch.exchanges))
            return
        lines = batch.lines
        if self._text:
            lines = [without_text(line) for line in lines]
        self.ring.file(lines)
        if batch.unrendered:
            # Those the accounting process could not render, which the log sink retries.
            self.ring.file(self._render(batch.unrendered))

    def _render(self, exchanges: Iterable[Exchange]) -> list[bytes]:
        """Each exchange as its JSON event line, without text; one that fails to
        render is left out, as it is from the log."""
        lines = []
        for exchange in exchanges:
            if exchange.prompt_text is not None or exchange.completion_text is not None:
                exchange = msgspec.structs.replace(exchange, prompt_text=None, completion_text=None)
            try:
                lines.append(self._renderer.render(exchange))
            except Exception:  # noqa: BLE001, S112 - one bad record must not cost the batch
                continue
        return lines

    def on_alert(self, alert: AlertEvent) -> None:
        return None

    async def aclose(self) -> None:
        return None
