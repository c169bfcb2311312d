"""The OpenAPI 3.1 contract of the API (served at ``/v1/openapi.json``; a test validates it and checks that it
covers every route of the app)."""
from __future__ import annotations

from mapsvc import __version__

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_RELEASE = {"name": "release", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}}
_TILE_ID = {"name": "tile_id", "in": "path", "required": True,
            "description": "NDS.Live packed tile id (level-15 ids are negative)",
            "schema": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647}}
_LAYER = {"name": "layer", "in": "path", "required": True, "description": "raster layer name",
          "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}
_SECURED = [{"bearer": []}]


def _errors(*codes: int) -> dict:
    return {str(c): _PROBLEM for c in codes}


def _op(summary: str, ok: dict, *codes: int, params=None, secured=True, **extra) -> dict:
    op = {"summary": summary, "responses": {**ok, **_errors(*codes)}, **extra}
    if params:
        op["parameters"] = params
    op["security"] = _SECURED if secured else []
    return op


def _json_ok(schema: dict, desc: str = "OK", headers: dict | None = None) -> dict:
    body = {"description": desc, "content": {"application/json": {"schema": schema}}}
    if headers:
        body["headers"] = headers
    return {"200": body}


_AUTH = (400, 401, 403, 404, 414, 429)


def spec() -> dict:
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    etag = {"ETag": {"schema": {"type": "string"}, "description": "quoted sha256 of the body"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mapsvc", "version": __version__,
                 "description": "Signed, versioned Lanelet2 HD-map tiles for vehicles."},
        "servers": [{"url": "/"}],
        "paths": {
            "/v1/health": {"get": _op("Service health", _json_ok(ref("Health")), 503, secured=False)},
            "/v1/openapi.json": {"get": _op("This document", _json_ok({"type": "object"}), secured=False)},
            "/v1/keys": {"get": _op("Public manifest-signing keys with their ids",
                                    _json_ok(ref("Keys")), 414, 429, secured=False)},
            "/v1/releases": {"get": _op("Published releases, oldest first", _json_ok(ref("Releases")), *_AUTH)},
            "/v1/stations": {"get": _op("Reference stations and their live status (approximate positions)",
                                        _json_ok({"type": "object"}), *_AUTH)},
            "/v1/stations/{station_id}": {"get": _op(
                "One reference station's status", _json_ok({"type": "object"}), *_AUTH,
                params=[{"name": "station_id", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}}])},
            "/v1/network": {"get": _op("Network RTK: baselines, fix state, closures, interpolation residuals, "
                                       "excluded stations", _json_ok({"type": "object"}), *_AUTH)},
            "/v1/metrics": {"get": _op("Prometheus metrics of the stations (admin)", {"200": {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}, *_AUTH)},
            "/v1/whoami": {"get": _op("The caller's token name, role and permissions (the console's sign-in)",
                                      _json_ok(ref("WhoAmI")), *_AUTH)},
            "/v1/console/releases": {"get": _op(
                "Releases as the web console lists them: signature check, frame, offset provider, report verdict "
                "and grade (producers, surveyors, admins)", _json_ok(ref("ConsoleReleases")), *_AUTH)},
            **_console_pages(),
            "/v1/releases/latest": {"get": _op("The newest release", _json_ok(ref("Release")), *_AUTH)},
            "/v1/releases/{release}": {"get": _op(
                "The release manifest (canonical bytes, as signed)",
                {**_json_ok(ref("Manifest"), headers=etag), "304": {"description": "Not Modified"}},
                *_AUTH, params=[_RELEASE, _inm()])},
            "/v1/releases/{release}/manifest.sig": {"get": _op(
                "Detached Ed25519 signature of the manifest bytes", _json_ok(ref("Signature")), *_AUTH,
                params=[_RELEASE])},
            "/v1/releases/{release}/tiles": {"get": _op(
                "Tiles of the release in an area: bbox, or lat/lon/radius_m", _json_ok(ref("TileList")), *_AUTH,
                params=[_RELEASE,
                        _q("bbox", {"type": "string", "pattern": "^[^,]+,[^,]+,[^,]+,[^,]+$"},
                           "west,south,east,north (west > east: the box crosses the antimeridian)"),
                        _q("lat", {"type": "number", "minimum": -90, "maximum": 90}),
                        _q("lon", {"type": "number", "minimum": -180, "maximum": 180}),
                        _q("radius_m", {"type": "number", "minimum": 0})])},
            "/v1/releases/{release}/tiles/{tile_id}": {"get": _op(
                "One tile: gzip'd self-contained Lanelet2 OSM",
                {"200": {"description": "The tile", "headers": etag,
                         "content": {"application/gzip": {"schema": {"type": "string",
                                                                      "contentMediaType": "application/gzip"}}}},
                 "302": {"description": "Redirect to a signed, expiring URL (redirect=1)"},
                 "304": {"description": "Not Modified"}},
                *_AUTH, 503, params=[_RELEASE, _TILE_ID, _inm(),
                                     _q("redirect", {"type": "string", "enum": ["1", "true"]},
                                        "answer with a redirect to a signed URL (nginx secure_link)")])},
            "/v1/releases/{release}/tiles/{tile_id}.geojson": {"get": _op(
                "One tile as GeoJSON in the release's published frame: lanelets (polygons), areas, line strings "
                "(bounds, stop lines, ...) and regulatory elements; properties: id, type and the OSM tags",
                {"200": {"description": "The tile's features (gzip'd when the client accepts it)",
                         "headers": {"ETag": {"schema": {"type": "string"},
                                              "description": "quoted sha256 of the tile (as for the tile)"}},
                         "content": {"application/geo+json": {"schema": ref("TileGeoJSON")}}},
                 "304": {"description": "Not Modified"}},
                *_AUTH, 503, params=[_RELEASE, _TILE_ID, _inm()])},
            "/v1/releases/{release}/tiles/{tile_id}/rasters/{layer}": {"get": _op(
                "One raster layer of a tile (e.g. ground elevation, intensity): a cloud-optimised GeoTIFF in "
                "EPSG:4326 covering the tile, desensitised like the vectors; the manifest lists its sha256",
                {"200": {"description": "The raster", "headers": etag,
                         "content": {"image/tiff": {"schema": {"type": "string", "contentMediaType": "image/tiff"}}}},
                 "304": {"description": "Not Modified"}},
                *_AUTH, 503, params=[_RELEASE, _TILE_ID, _LAYER, _inm()])},
            "/v1/releases/{release}/tiles/{tile_id}/url": {"get": _op(
                "A signed, expiring URL of the tile's blob (nginx secure_link)", _json_ok(ref("TileUrl")),
                *_AUTH, params=[_RELEASE, _TILE_ID])},
            "/v1/releases/{release}/delta": {"get": _op(
                "Tiles added, changed and removed going from release `from` to this one", _json_ok(ref("Delta")),
                *_AUTH, params=[_RELEASE, {**_q("from", _RELEASE["schema"]), "required": True}])},
            "/v1/releases/{release}/report": {"get": _op(
                "Quality report of the release (surveyor, admin)",
                {"200": {"description": "The report", "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/html": {"schema": {"type": "string"}},
                    "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}}}}},
                *_AUTH, params=[_RELEASE, _q("format", {"type": "string", "enum": ["json", "html", "pdf"]}),
                                _q("lang", {"type": "string"})])},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "token from `mapsvc tokens create --role ROLE`"}},
            "responses": {"Problem": {"description": "RFC 9457 problem document",
                                      "content": {"application/problem+json": {"schema": ref("Problem")}}}},
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "instance": {"type": ["string", "null"]}}},
                "Health": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string"}, "version": {"type": "string"},
                    "releases": {"type": "integer"}, "latest": {"type": ["string", "null"]}}},
                "Key": {"type": "object", "required": ["key_id", "algorithm", "public_key"], "properties": {
                    "key_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "algorithm": {"const": "Ed25519"}, "created": {"type": "string"}, "active": {"type": "boolean"},
                    "public_key": {"type": "string", "description": "base64 of the raw 32-byte key"},
                    "public_key_pem": {"type": "string"}}},
                "Keys": {"type": "object", "properties": {"keys": {"type": "array", "items": ref("Key")}}},
                "Release": {"type": "object", "required": ["name", "level", "tiles"], "properties": {
                    "name": {"type": "string"}, "created": {"type": "string"}, "level": {"type": "integer"},
                    "tiles": {"type": "integer"}, "bytes": {"type": "integer"},
                    "manifest_sha256": {"type": "string"}}},
                "Releases": {"type": "object", "properties": {"releases": {"type": "array", "items": ref("Release")}}},
                "TileEntry": {"type": "object", "required": ["id", "sha256"], "properties": {
                    "id": {"type": "integer"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "bytes": {"type": "integer"},
                    "rasters": {"type": "object", "description": "per-tile raster layers by name (manifest only)",
                                "additionalProperties": ref("TileRaster")}}},
                "TileGeoJSON": {"type": "object", "required": ["type", "features"], "properties": {
                    "type": {"const": "FeatureCollection"},
                    "features": {"type": "array", "items": {
                        "type": "object", "required": ["type", "geometry", "properties"], "properties": {
                            "type": {"const": "Feature"}, "geometry": {"type": "object"},
                            "properties": {"type": "object", "required": ["id", "type", "tags"], "properties": {
                                "id": {"type": "integer"},
                                "type": {"enum": ["lanelet", "area", "line_string", "regulatory_element"]},
                                "tags": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}},
                "WhoAmI": {"type": "object", "required": ["name", "role", "permissions", "console"], "properties": {
                    "name": {"type": "string"}, "role": {"type": "string"}, "console": {"type": "boolean"},
                    "permissions": {"type": "array", "items": {"type": "string"}}}},
                "ConsoleReleases": {"type": "object", "properties": {"releases": {"type": "array", "items": {
                    "type": "object", "required": ["name", "tiles", "signature", "report"], "properties": {
                        "name": {"type": "string"}, "created": {"type": "string"}, "level": {"type": "integer"},
                        "tiles": {"type": "integer"}, "bytes": {"type": "integer"},
                        "manifest_sha256": {"type": "string"},
                        "signature": {"type": "object", "properties": {
                            "verified": {"type": "boolean"}, "key_id": {"type": ["string", "null"]},
                            "detail": {"type": "string"}}},
                        "frame": {"type": ["string", "null"]}, "offset_provider": {"type": ["string", "null"]},
                        "report": {"type": ["object", "null"], "properties": {
                            "result": {"type": ["string", "null"]}, "grade": {"type": ["string", "null"]},
                            "score": {"type": ["number", "null"]},
                            "findings": {"type": "object", "additionalProperties": {"type": "integer"}}}}}}}}},
                "TileRaster": {"type": "object", "required": ["sha256", "bytes", "path"], "properties": {
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "bytes": {"type": "integer"},
                    "path": {"type": "string"}}},
                "Manifest": {"type": "object", "required": ["format", "level", "tiles"], "properties": {
                    "format": {"type": "string"}, "level": {"type": "integer"},
                    "tiles": {"type": "array", "items": ref("TileEntry")}}},
                "Signature": {"type": "object", "required": ["algorithm", "key_id", "signature"], "properties": {
                    "algorithm": {"const": "Ed25519"}, "key_id": {"type": "string"},
                    "signature": {"type": "string"}, "manifest_sha256": {"type": "string"}}},
                "TileList": {"type": "object", "required": ["release", "level", "tiles"], "properties": {
                    "release": {"type": "string"}, "level": {"type": "integer"}, "query": {"type": "object"},
                    "tiles": {"type": "array", "items": ref("TileEntry")}}},
                "TileUrl": {"type": "object", "required": ["url", "expires"], "properties": {
                    "id": {"type": "integer"}, "sha256": {"type": "string"}, "url": {"type": "string"},
                    "expires": {"type": "integer"}}},
                "Delta": {"type": "object", "required": ["from", "to", "added", "changed", "removed"], "properties": {
                    "from": {"type": "string"}, "to": {"type": "string"},
                    "from_manifest_sha256": {"type": "string"}, "to_manifest_sha256": {"type": "string"},
                    "added": {"type": "array", "items": ref("TileEntry")},
                    "changed": {"type": "array", "items": ref("TileEntry")},
                    "removed": {"type": "array", "items": {"type": "integer"}},
                    "unchanged": {"type": "integer"}}},
            },
        },
    }


def _console_pages() -> dict:
    """The web console: HTML pages (one shell; data comes from /v1 with the token the page signs in with) and
    its assets (MapLibre GL JS from the npm package installed by `make setup`)."""
    html = {"200": {"description": "The console page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    name = lambda n: {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}  # noqa: E731
    pages = {"/": [], "/releases": [], "/releases/{release}": [_RELEASE], "/releases/{release}/report": [_RELEASE],
             "/releases/{a}/diff/{b}": [name("a"), name("b")], "/stations": []}
    out = {path: {"get": _op("Web console page", html, 414, 429, params=params, secured=False)}
           for path, params in pages.items()}
    out["/console/{asset}"] = {"get": _op(
        "A console asset (app.js, app.css, maplibre-gl.js, maplibre-gl-worker.js, maplibre-gl.css, "
        "maplibre-gl-LICENSE.txt)", {"200": {"description": "The asset", "content": {
            "text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}}}}}, 404, 414, 429, 503, params=[name("asset")],
        secured=False)}
    return out


def _q(name: str, schema: dict, desc: str = "") -> dict:
    p = {"name": name, "in": "query", "required": False, "schema": schema}
    if desc:
        p["description"] = desc
    return p


def _inm() -> dict:
    return {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}
