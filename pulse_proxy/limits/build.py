"""The limiter the settings ask for, or None when there are no rules (the default)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pulse_proxy.accounting.finish import key_hash_key
from pulse_proxy.accounting.pricing import PriceTable
from pulse_proxy.limits.limiter import Limiter
from pulse_proxy.settings import Settings


def build_limiter(settings: Settings, *, clock: Callable[[], float] = time.time) -> Limiter | None:
    limits = settings.limits
    if not limits.rules:
        return None
    prices = None
    if any(rule.cost_usd_per_day is not None for rule in limits.rules):
        prices = PriceTable.load(settings.pricing.files)
    store = None
    if limits.backend == "redis":
        # Imported only here: redis-py loads OpenTelemetry when that is installed.
        from pulse_proxy.limits.redis_store import RedisStore

        assert limits.redis_url is not None  # settings refuse redis without a URL
        store = RedisStore(
            limits.redis_url, timeout_ms=limits.backend_timeout_ms, max_keys=limits.max_keys
        )
    return Limiter(
        limits,
        hash_key=key_hash_key(settings.accounting.key_hash_salt),
        max_tags=settings.accounting.max_tags,
        prices=prices,
        clock=clock,
        store=store,
    )
