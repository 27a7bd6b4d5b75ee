"""Throttling: limits per key, user, tag, model or overall, in memory or on Redis.

``rules`` compiles the configured rules, ``facts`` reads a request for them,
``memory`` and ``redis_store`` keep the counters (``window`` is their arithmetic),
``limiter`` admits, releases and corrects, ``answer`` writes the 429, and
``observe`` is what the rest of the app sees: metrics, the correction consumer and
the built-in ``limits_backend_down`` alert.
"""
