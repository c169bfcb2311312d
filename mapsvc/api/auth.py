"""Bearer-token authentication and role checks (tokens from :class:`tokens.TokenStore`).

Which role may do what is data (:data:`PERMISSIONS`), not branches in views. Every release in the store is a
published one (publishing is atomic), so "vehicles read published releases only" means: vehicles get
manifests, signatures and tiles, nothing else (no reports, and no restricted attachment reaches anyone).
"""
from __future__ import annotations

import functools
import os
import threading
import time

from flask import current_app, g, request

from mapsvc.api.problems import Problem

PERMISSIONS = {
    "read_releases": ("vehicle", "producer", "surveyor", "admin"),
    "read_reports": ("surveyor", "admin"),
    "read_stations": ("vehicle", "producer", "surveyor", "admin"),
    "read_metrics": ("admin",),
    "read_rinex": ("surveyor", "admin"),  # station observation archive for post-processing
    "read_identity": ("vehicle", "producer", "surveyor", "admin"),
    "use_console": ("producer", "surveyor", "admin"),
    "read_precise_positions": ("admin",),  # below admin, station positions are rounded to 0.01 degree
}
_MAX_TOKEN = 512
_CHALLENGE = 'Bearer realm="mapsvc"'


class TokenSource:
    """One TokenStore (database connection) per process, opened lazily so a forked worker never shares one.

    Verified tokens are remembered for ``ttl`` seconds (a revocation takes effect within that time); unknown
    tokens are not remembered, so a flood of made-up tokens cannot grow the cache."""

    def __init__(self, path: str, ttl: float = 2.0):
        self.path = path
        self.ttl = ttl
        self._store = None
        self._pid = None
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, object]] = {}

    def verify(self, token: str):
        now = time.monotonic()
        hit = self._seen.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        if self._store is None or self._pid != os.getpid():
            with self._lock:
                if self._store is None or self._pid != os.getpid():
                    from tokens import open_tokens

                    self._store = open_tokens(self.path)
                    self._pid = os.getpid()
                    self._seen.clear()
        rec = self._store.verify(token)
        if rec is not None and self.ttl > 0:
            if len(self._seen) > 10000:
                self._seen.clear()
            self._seen[token] = (now + self.ttl, rec)
        else:
            self._seen.pop(token, None)
        return rec


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return value.strip()


def current_token():
    """The live token record of this request, or None (memoised on ``g``)."""
    try:
        return g.mapsvc_token
    except AttributeError:
        pass
    raw = _bearer()
    rec = None
    if raw and len(raw) <= _MAX_TOKEN:
        rec = current_app.extensions["mapsvc"]["tokens"].verify(raw)
    g.mapsvc_token = rec
    return rec


def rate_key() -> str:
    """Flask-Limiter key: the token name, or the client address when there is no valid token."""
    rec = current_token()
    return f"token:{rec.name}" if rec is not None else f"addr:{request.remote_addr}"


def requires(permission: str):
    roles = PERMISSIONS[permission]

    def deco(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            rec = current_token()
            if rec is None:
                if _bearer() is None:
                    raise Problem(401, "Unauthorized", "a bearer token is required (Authorization: Bearer ...)",
                                  {"WWW-Authenticate": _CHALLENGE})
                raise Problem(401, "Unauthorized", "the bearer token is invalid or revoked",
                              {"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'})
            if rec.role not in roles:
                raise Problem(403, "Forbidden", f"role {rec.role!r} may not {permission.replace('_', ' ')}")
            return view(*args, **kwargs)

        return wrapped

    return deco
