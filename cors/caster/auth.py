"""Client authentication: NTRIP Basic credentials = token name + token, with a short cache.

The cache keeps a token check off the database for ``ttl_s`` per (user, password); revocations
reach it through ``revoked()``, which the caster polls and then drops the revoked clients.
"""
from __future__ import annotations

import time


class ClientAuth:
    def __init__(self, tokens, ttl_s: float = 5.0, max_entries: int = 100_000):
        self.tokens = tokens
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[tuple[str, str], tuple[object, float]] = {}

    def authenticate(self, user: str | None, password: str | None):
        """The live token for Basic credentials, or None."""
        if user is None:
            return None
        key = (user, password or "")
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        token = self.tokens.verify_basic(user, password or "")
        if len(self._cache) > self.max_entries:
            self._cache.clear()
        self._cache[key] = (token, now + self.ttl_s)
        return token

    def revoked(self) -> set[str]:
        """Names of revoked tokens (read now); their cache entries are dropped."""
        revoked = {t.name for t in self.tokens.list() if t.revoked}
        self._cache = {k: v for k, v in self._cache.items() if k[0] not in revoked}
        return revoked
