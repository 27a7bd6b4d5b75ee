"""Bounded label values: the cure for the unbounded-series memory leak.

Model names, users and tag values come from clients, and a scanner (or one buggy
loop) can send a million distinct ones.  Every distinct label value is a new
Prometheus series or DogStatsD context that lives until the process dies, so each
client-controlled label goes through a :class:`BoundedLabel`: the first
``max_values`` distinct values are kept as they are (cleaned), every later new value
folds into ``other``.  First come, first kept: the values real traffic uses appear
early and stay; junk arriving later cannot evict them.

Instances are used from the event loop only (sinks run on the dispatcher task), and
``fold`` never awaits, so no lock is needed.
"""

from __future__ import annotations

from pulse_proxy.text import escape_control

DEFAULT_MAX_LENGTH = 64


def clean_label(value: str, max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """Control characters escaped, then cut to ``max_length`` characters.

    Escaping first means a value can never forge a line in any exposition format;
    cutting after means the result is bounded however many characters were escaped.
    """
    return escape_control(value)[:max_length]


class BoundedLabel:
    """At most ``max_values`` distinct cleaned values, plus ``other`` and ``none``.

    >>> model = BoundedLabel(2)
    >>> [model.fold(v) for v in ("gpt-4o", "o3", "junk-1", "gpt-4o", None)]
    ['gpt-4o', 'o3', 'other', 'gpt-4o', 'none']
    """

    __slots__ = ("_kept", "_seen", "folded", "max_length", "max_values", "none", "other")

    def __init__(
        self,
        max_values: int,
        other: str = "other",
        *,
        none: str = "none",
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        if max_values < 0:
            raise ValueError("max_values must be >= 0")
        self.max_values = max_values
        self.other = other
        self.none = none
        self.max_length = max_length
        # How many records fold() answered ``other`` for (exported so folding is visible).
        self.folded = 0
        # Raw value -> cleaned value, for raw values whose cleaned form is kept.  This
        # is the fast path; it is capped too, because many raw values (long names with
        # a common prefix) can share one cleaned form.
        self._seen: dict[str, str] = {}
        self._kept: set[str] = set()

    def fold(self, value: str | None, weight: int = 1) -> str:
        """The label value to use for ``value``: itself (cleaned), ``other`` or ``none``.

        ``weight`` is how many records carry ``value``, when a whole batch's are folded
        at once; it is what a fold into ``other`` adds to :attr:`folded`.
        """
        if not value:
            return self.none
        cleaned = self._seen.get(value)
        if cleaned is not None:
            return cleaned
        cleaned = clean_label(value, self.max_length)
        if cleaned not in self._kept:
            if len(self._kept) >= self.max_values:
                self.folded += weight
                return self.other
            self._kept.add(cleaned)
        if len(self._seen) < 4 * self.max_values + 16:
            self._seen[value] = cleaned
        return cleaned

    @property
    def values(self) -> frozenset[str]:
        """The values kept so far (without ``other`` and ``none``)."""
        return frozenset(self._kept)

    def __len__(self) -> int:
        return len(self._kept)

    def __repr__(self) -> str:
        return f"BoundedLabel(max_values={self.max_values}, kept={len(self._kept)}, folded={self.folded})"
