"""Model prices and request cost: ``cost_usd`` and ``llm_cost_usd_total``.

The bundled table (``pulse_proxy/data/pricing.yaml``, a copy of ``config/pricing.yaml``)
holds list prices in USD per million tokens; users override it with their own files.
Lookup is deliberately conservative: an exact id, the id without a provider prefix, the
id without a date suffix, and nothing fuzzier, because a wrong price is worse than a
missing one (``cost_usd: null`` is visible and counted; a silently wrong figure is not).

Usage::

    table = PriceTable.load([Path("my-prices.yaml")])
    table.cost("gpt-4o-2024-08-06", prompt_tokens=1200, completion_tokens=300,
               cached_tokens=1024)

Token semantics follow OpenAI's ``usage``: cached tokens are part of ``prompt_tokens``
(``prompt_tokens_details.cached_tokens``) and reasoning tokens are part of
``completion_tokens`` (``completion_tokens_details.reasoning_tokens``).  Both are
reported separately but counted once.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pulse_proxy.records import Exchange

CURRENCY = "USD"
UNIT = "per_million_tokens"
_PER = 1_000_000
_DECIMALS = 10  # enough for a single token of the cheapest model, none of float's noise
_TOP_KEYS = frozenset({"as_of", "currency", "unit", "models"})
_PRICE_KEYS = ("input", "cached_input", "output")

# Date and alias suffixes that name a snapshot of a base model: gpt-4o-2024-08-06,
# claude-sonnet-4-20250514, gpt-3.5-turbo-0125, claude-3-5-haiku-latest.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")


class PriceTableError(ValueError):
    """A price file that cannot be used; the message names the file, model and key."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens for one model."""

    input: float
    output: float = 0.0
    cached_input: float | None = None  # None: no cache discount, charged at ``input``

    def cost(
        self,
        *,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cached_tokens: int | None = 0,
        reasoning_tokens: int | None = 0,
    ) -> float:
        """USD for one request, rounded to 10 decimal places.

        ``cached_tokens`` are charged at ``cached_input`` and the rest of the prompt at
        ``input``.  ``reasoning_tokens`` are already inside ``completion_tokens``; should
        a provider report more reasoning than completion tokens, it evidently left them
        out, and the larger figure is billed.  Negative or missing counts count as 0.
        """
        prompt = max(prompt_tokens or 0, 0)
        cached = min(max(cached_tokens or 0, 0), prompt)
        completion = max(completion_tokens or 0, reasoning_tokens or 0, 0)
        cached_price = self.input if self.cached_input is None else self.cached_input
        total = (prompt - cached) * self.input + cached * cached_price + completion * self.output
        return round(total / _PER, _DECIMALS)


class PriceTable:
    """Model id → :class:`ModelPrice`, with the fallbacks of :meth:`price_for`."""

    def __init__(self, models: Mapping[str, ModelPrice], *, as_of: str | None = None) -> None:
        self._models = {model.lower(): price for model, price in models.items()}
        self.as_of = as_of

    @classmethod
    def load(cls, paths: Sequence[Path | str] = ()) -> PriceTable:
        """The bundled table overridden by each file of ``paths`` in order (later wins).

        An override replaces a model's whole entry; ``model: null`` removes a model.
        Raises :class:`PriceTableError` naming the file, the model and the key.
        """
        bundled = resources.files("pulse_proxy").joinpath("data/pricing.yaml")
        as_of, models = _parse(bundled.read_text(encoding="utf-8"), "bundled pricing.yaml")
        table: dict[str, ModelPrice] = {m: p for m, p in models.items() if p is not None}
        for path in paths:
            path = Path(path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PriceTableError(f"{path}: cannot read price file: {exc.strerror}") from exc
            file_as_of, overrides = _parse(text, str(path))
            as_of = file_as_of or as_of
            for model, price in overrides.items():
                if price is None:
                    table.pop(model, None)
                else:
                    table[model] = price
        return cls(table, as_of=as_of)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.price_for(model) is not None

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def price_for(self, model: str | None) -> ModelPrice | None:
        """The price of ``model``: exact id, then without provider prefix, then base id.

        ``openai/gpt-4o`` → ``gpt-4o``; ``gpt-4o-2024-08-06`` → ``gpt-4o``;
        ``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini`` (never ``gpt-4o``: only a whole
        date or ``-latest`` suffix is dropped, no prefix matching).  Case-insensitive.
        """
        if not model:
            return None
        candidate = model.strip().lower()
        for name in _candidates(candidate):
            price = self._models.get(name)
            if price is not None:
                return price
        return None

    def cost(
        self,
        model: str | None,
        *,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cached_tokens: int | None = 0,
        reasoning_tokens: int | None = 0,
    ) -> float | None:
        """USD for one request, or None when the model is not priced."""
        price = self.price_for(model)
        if price is None:
            return None
        return price.cost(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
        )

    def exchange_cost(self, exchange: Exchange) -> float | None:
        """Cost of a finished :class:`Exchange` (the accounting step's ``CostFn``).

        The upstream's ``response_model`` is priced first: it names the model that
        actually ran (a dated snapshot, or the model behind an Azure deployment name).
        None when no token count is known or neither model is priced.
        """
        if exchange.prompt_tokens is None:
            return None
        for model in (exchange.response_model, exchange.model):
            cost = self.cost(
                model,
                prompt_tokens=exchange.prompt_tokens,
                completion_tokens=exchange.completion_tokens,
                cached_tokens=exchange.cached_tokens,
                reasoning_tokens=exchange.reasoning_tokens,
            )
            if cost is not None:
                return cost
        return None


def _candidates(model: str) -> Iterator[str]:
    yield model
    base = model.rsplit("/", 1)[-1]  # openai/gpt-4o, openrouter/openai/gpt-4o
    if base != model:
        yield base
    snapshot = _SNAPSHOT.sub("", base)
    if snapshot != base and snapshot:
        yield snapshot


def _parse(text: str, source: str) -> tuple[str | None, dict[str, ModelPrice | None]]:
    """Validate one price file; every error names the file and the offending key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PriceTableError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        return None, {}
    if not isinstance(data, dict):
        raise PriceTableError(f"{source}: expected a mapping with a 'models' key")
    unknown = sorted(str(key) for key in data if key not in _TOP_KEYS)
    if unknown:
        raise PriceTableError(
            f"{source}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_TOP_KEYS))})"
        )
    if data.get("currency", CURRENCY) != CURRENCY:
        raise PriceTableError(f"{source}: currency: only {CURRENCY} is supported")
    if data.get("unit", UNIT) != UNIT:
        raise PriceTableError(f"{source}: unit: only {UNIT} is supported")
    as_of = data.get("as_of")
    if isinstance(as_of, dt.date):  # an unquoted date in YAML
        as_of = as_of.isoformat()
    if as_of is not None and not isinstance(as_of, str):
        raise PriceTableError(f'{source}: as_of: expected a date like "2026-11-29"')
    models = data.get("models") or {}
    if not isinstance(models, dict):
        raise PriceTableError(f"{source}: models: expected a mapping of model id to prices")
    parsed: dict[str, ModelPrice | None] = {}
    for model, entry in models.items():
        if not isinstance(model, str) or not model.strip():
            raise PriceTableError(f"{source}: models: model ids must be strings, got {model!r}")
        parsed[model.strip().lower()] = _parse_entry(entry, f"{source}: models.{model}")
    return as_of, parsed


def _parse_entry(entry: Any, where: str) -> ModelPrice | None:
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise PriceTableError(f"{where}: expected a mapping with input, cached_input, output")
    unknown = sorted(str(key) for key in entry if key not in _PRICE_KEYS)
    if unknown:
        raise PriceTableError(
            f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(_PRICE_KEYS)})"
        )
    if "input" not in entry:
        raise PriceTableError(f"{where}.input: required")
    values: dict[str, float] = {}
    for key in _PRICE_KEYS:
        if key not in entry:
            continue
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PriceTableError(f"{where}.{key}: must be a number of USD, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise PriceTableError(f"{where}.{key}: must be zero or more, got {value!r}")
        values[key] = float(value)
    return ModelPrice(
        input=values["input"],
        output=values.get("output", 0.0),
        cached_input=values.get("cached_input"),
    )
