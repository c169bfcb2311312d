"""The mapsvc HTTP API: a Flask app factory with blueprints. No module-level state: everything an app needs
lives in ``app.extensions["mapsvc"]`` (config, catalogue cache, token source, rate limiter).

Endpoints are under ``/v1`` (see :mod:`mapsvc.api.openapi` for the contract, served at ``/v1/openapi.json``).
Per request, one ``before_request`` does all the gatekeeping (query size, token lookup, rate limit) and one
``after_request`` writes the access line: the tile hot path stays within a few microseconds of bare Flask.
"""
from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from mapsvc.api.config import load_config

ACCESS_LOG = "mapsvc.api.access"
UNLIMITED_ENDPOINTS = frozenset({"meta.health"})


def create_app(config: dict | None = None) -> Flask:
    from mapsvc.api import console, geojson, meta, problems, ratelimit, releases, stations
    from mapsvc.api.auth import TokenSource, current_token, rate_key
    from mapsvc.api.catalogue import Catalogue
    from mapsvc.api.problems import Problem

    cfg = load_config(config)
    app = Flask("mapsvc.api")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # the API takes no uploads
    app.extensions["mapsvc"] = {
        "config": cfg,
        "catalogue": Catalogue(cfg["STORE_URL"], float(cfg["RELEASES_TTL"]), tile_cache_mb=float(cfg["TILE_CACHE_MB"])),
        "tokens": TokenSource(cfg["TOKENS_DB"], float(cfg["TOKEN_CACHE_TTL"])),
        "limiter": None,
    }
    problems.register(app)
    max_query = int(cfg["MAX_QUERY_BYTES"])
    log = logging.getLogger(ACCESS_LOG)
    access_log = bool(cfg["ACCESS_LOG"])
    check_rate = None

    @app.before_request
    def _gate():
        if access_log:
            g.mapsvc_t0 = time.perf_counter()
        if len(request.query_string) > max_query:
            raise Problem(414, "URI Too Long", f"query string longer than {max_query} bytes")
        current_token()
        if check_rate is not None:
            check_rate()

    check_rate = ratelimit.install(app, cfg, rate_key, UNLIMITED_ENDPOINTS)

    if access_log:
        @app.after_request
        def _line(resp):
            if log.isEnabledFor(logging.INFO):
                # the token's name only: tokens, keys and Authorization headers are never logged
                tok = getattr(g, "mapsvc_token", None)
                t0 = getattr(g, "mapsvc_t0", None)
                ms = (time.perf_counter() - t0) * 1000 if t0 is not None else -1.0
                log.info('%s "%s %s" %d %s %.2fms', request.remote_addr, request.method, request.path,
                         resp.status_code, tok.name if tok is not None else "-", ms)
            return resp

    app.register_blueprint(releases.bp, url_prefix="/v1")
    app.register_blueprint(meta.bp, url_prefix="/v1")
    app.register_blueprint(stations.bp, url_prefix="/v1")
    app.register_blueprint(geojson.bp, url_prefix="/v1")
    app.register_blueprint(console.bp)
    if cfg["FAST_TILE_PATH"] and cfg["RATE_LIMIT_ENGINE"] != "flask-limiter":
        from mapsvc.api.fastpath import TileFastPath

        lean = app.extensions["mapsvc"]["limiter"]
        app.wsgi_app = TileFastPath(app, lean, access_log)
    return app


__all__ = ["create_app", "load_config"]
