"""What ``/readyz`` answers, and one log line each time that answer turns over.

An orchestrator acts on readiness (a pod leaves the load balancer, a rollout stalls),
so an operator needs to see when and why it changed without polling ``/readyz``.
Probes run every few seconds; only a change of verdict is announced, never a probe.
"""

from __future__ import annotations

from collections.abc import Callable

# Called with (ready, reason) when the verdict turns over, and for the first verdict.
Announce = Callable[[bool, str], None]


class Readiness:
    """The last upstream probe's verdict, for ``/readyz``, unless something the proxy
    knows better holds it down: a bundled mock being restarted is not ready whatever
    an earlier probe said, and its reason names the mock rather than a socket error.

    ``announce`` hears the first verdict (so start-up says whether the upstream is
    there) and then every flip between ready and not ready.  A not-ready reason that
    merely changes wording (one refused connection, then a timeout) is not a flip:
    a sick upstream would otherwise log on every probe."""

    def __init__(self, announce: Announce | None = None) -> None:
        self._probe = (False, "upstream not probed yet")
        self._held: str | None = None
        self._announce = announce
        self._announced: bool | None = None

    @property
    def ready(self) -> bool:
        return self._held is None and self._probe[0]

    @property
    def reason(self) -> str:
        return self._held or self._probe[1]

    def set(self, ready: bool, reason: str) -> None:
        self._probe = (ready, reason)
        self._settle()

    def hold(self, reason: str) -> None:
        """Not ready, for ``reason``, until :meth:`release`."""
        self._held = reason
        self._settle()

    def release(self) -> None:
        self._held = None
        self._settle()

    def _settle(self) -> None:
        ready = self.ready
        if ready is self._announced:
            return
        self._announced = ready
        if self._announce is not None:
            self._announce(ready, self.reason)
