"""The last requests, one by one: a bounded ring of ``llm.request`` records and ``/pulse/requests``.

:class:`~pulse_proxy.recent.sink.RecentRequests` is a sink: it files each batch's
rendered event lines into a :class:`~pulse_proxy.recent.ring.RequestRing`, so a record
is exactly the event's line (never prompt or completion text, even when the log
carries them).  :mod:`~pulse_proxy.recent.query` filters and pages the ring;
:mod:`~pulse_proxy.recent.endpoint` serves it as JSON or JSON lines.
"""

from __future__ import annotations

from pulse_proxy.recent.endpoint import requests_endpoint
from pulse_proxy.recent.ring import RequestRing
from pulse_proxy.recent.sink import RecentRequests

__all__ = ["RecentRequests", "RequestRing", "requests_endpoint"]
