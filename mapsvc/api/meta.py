"""Service endpoints: health, public keys, the OpenAPI document."""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from mapsvc import __version__
from mapsvc.api.openapi import spec
from mapsvc.api.problems import Problem
from tiles.signing import list_keys

bp = Blueprint("meta", __name__)


def _json(obj, headers=None) -> Response:
    return Response(json.dumps(obj, indent=1) + "\n", mimetype="application/json", headers=headers)


@bp.get("/health")
def health():
    cat = current_app.extensions["mapsvc"]["catalogue"]
    try:
        rel = cat.releases()
    except Exception as exc:  # a broken store is "unhealthy", reported as such, not a crash
        raise Problem(503, "Service Unavailable", f"release store unavailable: {type(exc).__name__}") from None
    return _json({"status": "ok", "version": __version__, "releases": len(rel),
                  "latest": rel[-1].name if rel else None}, {"Cache-Control": "no-store"})


@bp.get("/keys")
def keys():
    """Public keys only: as_dict never carries private material."""
    home = current_app.extensions["mapsvc"]["config"]["HOME"]
    return _json({"keys": [k.as_dict() for k in list_keys(home)]}, {"Cache-Control": "no-cache"})


@bp.get("/openapi.json")
def openapi():
    return _json(spec(), {"Cache-Control": "no-cache"})
