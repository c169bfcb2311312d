"""The release catalogue as the API sees it: a per-process cache in front of the release store.

Releases are immutable, so a release's manifest (raw canonical bytes, parsed entries, tile bboxes) is read once
and kept; only the list of releases (which grows on publish) is re-read, at most every ``RELEASES_TTL``
seconds. One instance per app (kept in ``app.extensions``), never module state.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

from tiles import open_store
from tiles.errors import StoreError
from tiles.store import RELEASE_NAME
from tiles.view import ReleaseView

from mapsvc.api.problems import Problem


class Catalogue:
    def __init__(self, store_url: str, releases_ttl: float = 1.0, keep: int = 64, tile_cache_mb: float = 64.0):
        self.store_url = store_url
        self.releases_ttl = releases_ttl
        self.keep = keep
        self._store = None
        # Tile bytes kept in memory (blobs are immutable and content-addressed, so a cached copy never goes
        # stale). Loading checks the sha256 once: a blob damaged on disk is never cached or served from here.
        self.tile_cache_budget = int(tile_cache_mb * 1024 * 1024)
        self._bytes: dict[str, bytes] = {}
        self._bytes_total = 0
        self._views: OrderedDict[str, ReleaseView] = OrderedDict()
        self._list: tuple[float, list] | None = None
        self._lock = threading.Lock()

    @property
    def store(self):
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    def releases(self) -> list:
        now = time.monotonic()
        cached = self._list
        if cached is not None and now - cached[0] < self.releases_ttl:
            return cached[1]
        rel = self.store.releases()
        self._list = (now, rel)
        return rel

    def latest(self):
        rel = self.releases()
        if not rel:
            raise Problem(404, "Not Found", "no release has been published")
        return rel[-1]

    def release(self, name: str) -> ReleaseView:
        view = self._views.get(name)
        if view is not None:
            return view
        if not RELEASE_NAME.fullmatch(name):
            raise Problem(404, "Not Found", "unknown release (release names are letters, digits, '.', '_', '-')")
        try:
            raw = self.store.manifest_raw(name)
        except StoreError:
            raise Problem(404, "Not Found", f"unknown release {name!r}") from None
        view = ReleaseView.of(name, raw)
        with self._lock:
            self._views[name] = view
            while len(self._views) > self.keep:
                self._views.popitem(last=False)
        return view

    def tile_bytes(self, sha: str, path: str | None) -> bytes | None:
        """A tile's verified bytes from memory (loaded on first use), or None: cache off, tile too big for the
        budget, file missing, or bytes that do not hash to ``sha`` (the caller then decides). ``path`` None:
        the store keeps no local files, so the bytes come from the store (and are served from here)."""
        data = self._bytes.get(sha)
        if data is not None or (self.tile_cache_budget <= 0 and path is not None):
            return data
        try:
            if path is None:
                data = self.store.blob(sha)
            else:
                with open(path, "rb") as f:
                    data = f.read()
        except (OSError, StoreError):
            return None
        if path is None and self.tile_cache_budget <= 0:
            return data if hashlib.sha256(data).hexdigest() == sha else None
        if len(data) > self.tile_cache_budget // 4 or hashlib.sha256(data).hexdigest() != sha:
            return None
        with self._lock:
            while self._bytes and self._bytes_total + len(data) > self.tile_cache_budget:
                old = next(iter(self._bytes))  # oldest first: tiles are immutable, FIFO is enough
                self._bytes_total -= len(self._bytes.pop(old))
            if sha not in self._bytes:
                self._bytes[sha] = data
                self._bytes_total += len(data)
        return data

    def attachment(self, name: str, key: str) -> bytes | None:
        """A release attachment that is not restricted (restricted ones, e.g. audit.json, are never served)."""
        self.release(name)
        try:
            return self.store.attachment(name, key, restricted_ok=False)
        except StoreError:
            return None
