"""Throttling: limits per key, user, tag, model or overall, in memory or on Redis.

``rules`` compiles the configured rules, ``facts`` reads a request for them,
``memory`` and ``redis_store`` keep the counters (``window`` is their arithmetic,
``backend`` what both answer), ``limiter`` admits, releases and corrects, ``answer``
writes the 429, ``build`` makes the limiter the settings ask for, and ``observe`` is
what the rest of the app sees: metrics, the correction consumer, the built-in
``limits_backend_down`` alert and the actions alerts switch.
"""
