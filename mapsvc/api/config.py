"""API configuration: defaults < a YAML/JSON file < ``MAPSVC_*`` environment variables < the caller's dict.

The file is named by ``MAPSVC_API_CONFIG`` (or the ``CONFIG_FILE`` key of the caller's dict). Every key below
can be set from the environment as ``MAPSVC_<KEY>`` (``MAPSVC_HOME`` is the same variable ``mapsvc.config``
reads); values are converted to the type of the default.
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULTS: dict = {
    "HOME": None,                  # default: mapsvc.config.home() ($MAPSVC_HOME or ./var)
    "STORE_URL": None,             # default: HOME/store
    "BUS": "",                     # redis://... (MAPSVC_BUS): /v1/stations shows every node's stations and clients
    "TOKENS_DB": None,             # default: HOME/tokens.sqlite, or the PostgreSQL store's database (as `mapsvc tokens`)
    "STATIONS_DB": None,           # default: HOME/stations.sqlite, or the PostgreSQL store's database
    "RATE_LIMIT": "1200 per minute",  # per token (per client address when there is no valid token)
    "RATE_LIMIT_ENABLED": True,
    "RATE_LIMIT_ENGINE": "limits",  # or "flask-limiter" (see mapsvc.api.ratelimit for why not by default)
    "RATE_LIMIT_STORAGE_URI": "memory://",  # per worker process; use redis://... to share between workers
    "MAX_QUERY_BYTES": 2048,       # longer query strings get 414
    "MAX_RADIUS_M": 50000.0,       # ?radius_m upper bound
    "MAX_BBOX_DEG": 10.0,          # ?bbox width/height upper bound (degrees)
    "TOKEN_CACHE_TTL": 2.0,        # seconds a verified token is remembered (a revocation takes effect within it)
    "TILE_CACHE_MB": 64.0,         # per worker: tile bytes kept in memory (sha256-checked on load); 0 = off
    "FAST_TILE_PATH": True,        # tile GETs answered before Flask (mapsvc.api.fastpath); errors still via Flask
    "RELEASES_TTL": 1.0,           # seconds the release list is cached (manifests are immutable: cached for good)
    "SECURE_LINK_SECRET": "",      # set to issue nginx secure_link URLs (see docs/serving.md)
    "SECURE_LINK_BASE": "",        # where nginx serves the blob directory, e.g. https://tiles.example/blobs
    "SECURE_LINK_TTL": 300,        # seconds a signed tile URL stays valid
    "ACCESS_LOG": True,            # one line per request on logger "mapsvc.api.access" (token name, never token)
    "ACCESS_LOG_FILE": "",         # under gunicorn: where those lines go (default stderr)
}

_TRUE = {"1", "true", "yes", "on"}


def _coerce(key: str, value: str):
    default = DEFAULTS.get(key)
    if isinstance(default, bool):
        return value.strip().lower() in _TRUE
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


def load_config(overrides: dict | None = None) -> dict:
    overrides = dict(overrides or {})
    cfg = dict(DEFAULTS)
    path = overrides.pop("CONFIG_FILE", None) or os.environ.get("MAPSVC_API_CONFIG")
    if path:
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: API configuration must be a mapping of KEY: value")
        cfg.update({k.upper(): v for k, v in data.items()})
    for key in DEFAULTS:
        env = os.environ.get(f"MAPSVC_{key}")
        if env not in (None, ""):
            cfg[key] = _coerce(key, env)
    cfg.update({k.upper(): v for k, v in overrides.items()})
    if not cfg["HOME"]:
        from mapsvc.config import home

        cfg["HOME"] = str(home())
    cfg["HOME"] = str(Path(cfg["HOME"]).resolve())
    if not cfg["STORE_URL"]:
        from mapsvc.config import store_url

        cfg["STORE_URL"] = os.environ.get("MAPSVC_STORE") and store_url() or str(Path(cfg["HOME"]) / "store")
    from mapsvc.config import state_db

    cfg["TOKENS_DB"] = str(cfg["TOKENS_DB"] or state_db("tokens.sqlite", cfg["STORE_URL"], cfg["HOME"]))
    cfg["STATIONS_DB"] = str(cfg["STATIONS_DB"] or state_db("stations.sqlite", cfg["STORE_URL"], cfg["HOME"]))
    return cfg
