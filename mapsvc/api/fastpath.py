"""The tile hot path as plain WSGI in front of the Flask app.

``GET /v1/releases/{release}/tiles/{tile_id}`` with no query string, a live token whose role may read releases,
a known release and tile, within the rate limit: answered here (200 from the checked in-memory copy, or from
the blob file through the server's ``wsgi.file_wrapper``/sendfile when the cache is off; or 304) without building a Flask request context. Everything else -- every
error, every other endpoint -- falls through to the Flask app, which answers with the same rules and problem
documents. Why: a Flask request costs about as much CPU as the whole tile response; this keeps the API's tile
GETs at or above a bare Flask app's throughput with auth, ETag, rate limit and access log on
(benchmarks/bench_http.py). Headers and bodies are identical to the Flask route's (tests/api check it).
"""
from __future__ import annotations

import logging
import os
import time

from werkzeug.wsgi import FileWrapper

from mapsvc.api.auth import PERMISSIONS
from mapsvc.api.releases import TILE_CACHE, TILE_ID, not_modified

_PREFIX = "/v1/releases/"


class TileFastPath:
    def __init__(self, flask_app, limiter=None, access_log: bool = True):
        self.flask_app = flask_app
        self.wsgi = flask_app.wsgi_app
        ext = flask_app.extensions["mapsvc"]
        self.catalogue = ext["catalogue"]
        self.tokens = ext["tokens"]
        self.limiter = limiter
        self.roles = frozenset(PERMISSIONS["read_releases"])
        self.log = logging.getLogger("mapsvc.api.access") if access_log else None

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET" and not environ.get("QUERY_STRING"):
            path = environ.get("PATH_INFO", "")
            if path.startswith(_PREFIX):
                parts = path.split("/")
                if len(parts) == 6 and parts[4] == "tiles":
                    out = self._tile(environ, start_response, parts[3], parts[5])
                    if out is not None:
                        return out
        return self.wsgi(environ, start_response)

    def _tile(self, environ, start_response, release: str, tile_id: str):
        t0 = time.perf_counter()
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header[:7].lower() != "bearer " or len(header) > 519:
            return None
        rec = self.tokens.verify(header[7:].strip())
        if rec is None or rec.role not in self.roles:
            return None
        view = self.catalogue._views.get(release)
        if view is None:
            return None  # first request for a release: Flask loads (or rejects) it
        row = view.index.get(int(tile_id)) if TILE_ID.fullmatch(tile_id) else None
        if row is None:
            return None
        if self.limiter is not None and not self.limiter.allow(f"token:{rec.name}"):
            return None  # Flask answers the 429 with its problem document
        sha = view.sha[row]
        etag = f'"{sha}"'
        if not_modified(environ, sha):
            start_response("304 NOT MODIFIED", [("ETag", etag), ("Cache-Control", TILE_CACHE)])
            self._line(environ, path_status=304, rec=rec, t0=t0)
            return []
        path = view.blob_path(row, self.catalogue.store)
        data = self.catalogue.tile_bytes(sha, path)
        if data is None and (path is None or self.catalogue.tile_cache_budget > 0):
            return None  # not cacheable or failed its checksum: Flask decides
        headers = [("Content-Type", "application/gzip"), ("Content-Length", ""), ("ETag", etag),
                   ("Cache-Control", TILE_CACHE)]
        if data is not None:
            headers[1] = ("Content-Length", str(len(data)))
            start_response("200 OK", headers)
            self._line(environ, path_status=200, rec=rec, t0=t0)
            return [data]
        try:
            f = open(path, "rb")
        except OSError:
            return None
        headers[1] = ("Content-Length", str(os.fstat(f.fileno()).st_size))
        start_response("200 OK", headers)
        self._line(environ, path_status=200, rec=rec, t0=t0)
        wrapper = environ.get("wsgi.file_wrapper", FileWrapper)
        return wrapper(f, 8192)

    def _line(self, environ, path_status: int, rec, t0: float) -> None:
        log = self.log
        if log is not None and log.isEnabledFor(logging.INFO):
            log.info('%s "%s %s" %d %s %.2fms', environ.get("REMOTE_ADDR"), "GET", environ.get("PATH_INFO"),
                     path_status, rec.name, (time.perf_counter() - t0) * 1000)
