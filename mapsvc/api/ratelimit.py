"""Per-token rate limits: a token (or, without a valid token, a client address) gets ``RATE_LIMIT`` requests
per window across the whole API; over it, 429 with ``Retry-After``.

Two engines, same limit strings (``"1200 per minute"``), same storage URIs (``memory://``, ``redis://...``):

- ``flask-limiter`` (``RATE_LIMIT_ENGINE=flask-limiter``): Flask-Limiter's own per-request hooks.
- ``limits`` (default): the `limits` library that Flask-Limiter is built on, called once per request from the
  API's single ``before_request``. Measured on this 2-core machine, Flask-Limiter's hooks cost 35-55 us per
  request even with nothing to limit -- as much as a whole bare-Flask tile request -- which alone breaks the
  "rate limits cost almost nothing" target (benchmarks/bench_http.py); one ``hit`` here costs about 2 us.
"""
from __future__ import annotations

import time

from flask import Flask, request

from mapsvc.api.problems import Problem

ENGINES = ("limits", "flask-limiter")


class LeanLimiter:
    """One fixed-window counter per key, in the storage Flask-Limiter would use."""

    def __init__(self, limit: str, storage_uri: str, strategy: str = "fixed-window"):
        from limits import parse_many, storage, strategies

        self.items = parse_many(limit)
        self.storage = storage.storage_from_string(storage_uri)
        self.strategy = strategies.STRATEGIES[strategy](self.storage)

    def allow(self, key: str) -> bool:
        """Count one request; False when over a limit (the caller then answers 429 through :meth:`check`)."""
        return all(self.strategy.hit(item, "mapsvc", key) for item in self.items)

    def check(self, key: str) -> None:
        for item in self.items:
            if not self.strategy.hit(item, "mapsvc", key):
                reset = self.strategy.get_window_stats(item, "mapsvc", key).reset_time
                raise Problem(429, "Too Many Requests", f"rate limit exceeded ({item})",
                              {"Retry-After": str(max(1, int(reset - time.time()) + 1))})


def install(app: Flask, cfg: dict, key_func, exempt: frozenset[str]):
    """Set up the configured engine; returns a per-request check (or None when Flask-Limiter hooks do it)."""
    engine = cfg["RATE_LIMIT_ENGINE"]
    if engine not in ENGINES:
        raise ValueError(f"RATE_LIMIT_ENGINE={engine!r}: expected one of {', '.join(ENGINES)}")
    if not cfg["RATE_LIMIT_ENABLED"] or not cfg["RATE_LIMIT"]:
        return None
    if engine == "flask-limiter":
        from flask_limiter import Limiter

        # application limits: one budget per token across all endpoints (default limits are per endpoint)
        limiter = Limiter(key_func, application_limits=[cfg["RATE_LIMIT"]],
                          storage_uri=cfg["RATE_LIMIT_STORAGE_URI"],
                          application_limits_exempt_when=lambda: request.endpoint in exempt, headers_enabled=False,
                          strategy="fixed-window")
        limiter.init_app(app)
        app.extensions["mapsvc"]["limiter"] = limiter
        return None
    lean = LeanLimiter(cfg["RATE_LIMIT"], cfg["RATE_LIMIT_STORAGE_URI"])
    app.extensions["mapsvc"]["limiter"] = lean

    def check():
        if request.endpoint not in exempt:
            lean.check(key_func())

    return check
