"""The console's data: tile GeoJSON (against the tile's own OSM), /v1/whoami, /v1/console/releases, the console
pages' headers, and station positions by role. On the real shared map published as r1/r2 (tests/api/conftest)."""
from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pytest
import requests
import shapely

from tests.api.conftest import assert_problem


def _tile_map(store, release, tile_id):
    from lanelets import read_osm

    return read_osm(store.tile(release, tile_id)[0], name=f"tile {tile_id}")


def test_tile_geojson_holds_the_tiles_elements_in_its_published_frame(get, store):
    manifest = store.manifest("r1")
    n_lanelets = 0
    for entry in manifest["tiles"]:
        r = get(f"/v1/releases/r1/tiles/{entry['id']}.geojson", role="vehicle")
        assert r.status_code == 200, r.text[:200]
        assert r.headers["Content-Type"].startswith("application/geo+json")
        fc = r.json()
        m = _tile_map(store, "r1", entry["id"])
        types = [t.get("type") for t in m.rel_tags]
        by_type = {}
        for f in fc["features"]:
            by_type.setdefault(f["properties"]["type"], {})[f["properties"]["id"]] = f
        assert set(by_type) <= {"lanelet", "area", "line_string", "regulatory_element"}
        want_lanelets = {int(i) for i, t in zip(m.rel_id, types) if t == "lanelet"}
        assert set(by_type.get("lanelet", {})) == want_lanelets
        assert set(by_type.get("regulatory_element", {})) == {int(i) for i, t in zip(m.rel_id, types)
                                                             if t == "regulatory_element"}
        drawn = np.diff(m.way_ptr) > 0  # a way without points (e.g. action='delete') has no geometry
        assert set(by_type.get("line_string", {})) == {int(i) for i in m.way_id[drawn]}
        n_lanelets += len(want_lanelets)
        lon, lat = m.lonlat()
        nodes = {(round(float(x), 7), round(float(y), 7)) for x, y in zip(lon, lat)}
        for r_row, rid in enumerate(m.rel_id):
            f = by_type.get(types[r_row], {}).get(int(rid))
            if f is None:
                continue
            assert f["properties"]["tags"] == m.rel_tags[r_row]  # OSM tags verbatim
            if types[r_row] == "lanelet":
                poly = shapely.geometry.shape(f["geometry"])
                assert poly.is_valid and poly.area > 0
                # every vertex is one of the tile's own (published, offset) points
                ring = np.asarray(poly.exterior.coords) if poly.geom_type == "Polygon" else \
                    np.vstack([g.exterior.coords for g in poly.geoms])
                props = f["properties"]
                bounds = shapely.MultiLineString([by_type["line_string"][props[k]]["geometry"]["coordinates"]
                                                  for k in ("left", "right")])
                for x, y in ring:
                    # one of the tile's own (published, offset) points, or where a self-crossing bound was cut
                    assert (round(x, 7), round(y, 7)) in nodes or bounds.distance(shapely.Point(x, y)) < 1e-8
        for w in np.flatnonzero(drawn):
            wid = m.way_id[w]
            assert by_type["line_string"][int(wid)]["properties"]["tags"] == m.way_tags[w]
    assert n_lanelets > 0


def test_tile_geojson_caching_and_access_rules(get, store, api_home, server):
    entry = store.manifest("r1")["tiles"][0]
    path = f"/v1/releases/r1/tiles/{entry['id']}.geojson"
    r = get(path, role="surveyor")
    assert r.headers["ETag"] == f'"{entry["sha256"]}"'  # the tile's own ETag
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers.get("Content-Encoding") == "gzip"  # requests asks for gzip
    assert get(path, role="vehicle", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    plain = get(path, role="vehicle", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and json.loads(plain.content) == r.json()
    # converted once, kept by the tile's sha256 beside the blobs, for every worker and node
    cached = store.derived_dir("geojson") / entry["sha256"][:2] / f"{entry['sha256']}.geojson.gz"
    assert cached.exists() and json.loads(gzip.decompress(cached.read_bytes())) == r.json()
    assert_problem(get(path, role=None), 401)
    assert_problem(get(path, role="revoked"), 401)
    assert_problem(get("/v1/releases/r1/tiles/12345.geojson"), (400, 404))
    assert_problem(get("/v1/releases/r1/tiles/abc.geojson"), 400)
    assert_problem(get("/v1/releases/nope/tiles/1.geojson"), 404)
    assert_problem(get(path + "?x=1"), 400)
    spec = get("/v1/openapi.json", role=None).json()
    assert "/v1/releases/{release}/tiles/{tile_id}.geojson" in spec["paths"]


def test_publish_prepares_every_tile_for_the_console(get, store):
    """publish fills the store's shared GeoJSON directory, so a release's first view converts nothing; the API
    serves exactly those bytes."""
    from tiles.geojson import GeoJSONCache, tile_geojson_bytes

    cache = GeoJSONCache(store.derived_dir("geojson"))
    for name in ("r1", "r2"):
        tiles = store.manifest(name)["tiles"]
        assert tiles
        for entry in tiles:
            path = cache.path(entry["sha256"])
            assert path.is_file(), f"{name}: tile {entry['id']} not prepared at publish"
            assert gzip.decompress(path.read_bytes()) == tile_geojson_bytes(store.blob(entry["sha256"]))
    entry = store.manifest("r1")["tiles"][0]
    r = get(f"/v1/releases/r1/tiles/{entry['id']}.geojson", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.content == gzip.decompress(cache.path(entry["sha256"]).read_bytes())


def test_geojson_cache_converts_a_tile_once(store, tmp_path):
    from tiles.geojson import GeoJSONCache

    entry = store.manifest("r1")["tiles"][0]
    calls = []

    def tile():
        calls.append(1)
        return store.blob(entry["sha256"])

    first = GeoJSONCache(tmp_path).get(entry["sha256"], tile)
    assert GeoJSONCache(tmp_path).get(entry["sha256"], tile) == first  # another worker: from the directory
    assert len(calls) == 1


def test_whoami_and_console_releases(get, store, api_home):
    from tiles.store import desensitisation_of

    me = get("/v1/whoami", role="vehicle").json()
    assert me["role"] == "vehicle" and me["console"] is False
    assert get("/v1/whoami", role="producer").json()["console"] is True
    assert_problem(get("/v1/whoami", role=None), 401)
    assert_problem(get("/v1/console/releases", role="vehicle"), 403)
    body = get("/v1/console/releases", role="producer").json()
    rel = {r["name"]: r for r in body["releases"]}
    assert set(rel) == {r.name for r in store.releases()}
    for name, r in rel.items():
        assert r["signature"]["verified"] is True, r["signature"]
        assert r["offset_provider"] == desensitisation_of(store.manifest(name))["offset"]["name"]
        assert r["frame"] == "CGCS2000@2000"  # the signed frame declaration, as a label
        assert r["tiles"] == len(store.manifest(name)["tiles"])
        try:
            rep = json.loads(store.attachment(name, "report.json"))
        except Exception:
            assert r["report"] is None
        else:
            assert (r["report"]["result"], r["report"]["grade"]) == (rep["verdict"]["result"], rep["verdict"]["grade"])


def test_console_pages_are_one_shell_kept_on_this_host(server):
    for path in ("/", "/releases", "/releases/r1", "/releases/r1/report", "/releases/r1/diff/r2", "/stations"):
        r = requests.get(server.url + path, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "http" not in csp
        assert "http://" not in r.text and "https://" not in r.text  # nothing from another host
    r = requests.get(server.url + "/console/app.js", timeout=10)
    assert r.status_code == 200 and "sessionStorage" in r.text
    assert_problem(requests.get(server.url + "/console/nope.js", timeout=10), 404)


def test_maplibre_is_served_from_the_pinned_npm_package(server):
    from mapsvc.api.console import maplibre_dir

    if not (maplibre_dir() / "package.json").exists():
        pytest.skip("node_modules/maplibre-gl is absent: `make setup` installs it (npm ci)")
    lock = json.loads((maplibre_dir().parents[1] / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/maplibre-gl"]["version"]
    installed = json.loads((maplibre_dir() / "package.json").read_text())["version"]
    assert installed == pinned
    js = requests.get(server.url + "/console/maplibre-gl.js", timeout=10)
    assert js.status_code == 200 and f"v{pinned}" in js.text[:400]
    lic = requests.get(server.url + "/console/maplibre-gl-LICENSE.txt", timeout=10)
    assert lic.status_code == 200 and "Copyright" in lic.text


def test_station_positions_are_rounded_below_admin(get, api_home):
    from cors.stations import Station, StationRegistry

    home = api_home["home"]
    reg = StationRegistry(home / "stations.sqlite")
    try:
        if not any(s.id == "BJYZ" for s in reg.list()):
            reg.add(Station(id="BJYZ", mountpoint="BJYZ0", ecef=(-2178000.123, 4388000.456, 4070000.789)),
                    password="pw")
        lat, lon, h = reg.get("BJYZ").geodetic
    finally:
        reg.close()
    # a status document as the caster writes it, but with too many digits: the API must still round them
    doc = {"generated": time.time(), "caster": {}, "stations": [
        {"id": "BJYZ", "mountpoint": "BJYZ0", "approx_lat": lat, "approx_lon": lon, "up": True,
         "ecef": [1, 2, 3]}]}
    (home / "cors_status.json").write_text(json.dumps(doc))
    try:
        for role in ("vehicle", "producer", "surveyor"):
            for path in ("/v1/stations", "/v1/stations/BJYZ"):
                body = get(path, role=role).json()
                st = body["stations"][0] if "stations" in body else body
                assert st["approx_lat"] == round(lat, 2) and st["approx_lon"] == round(lon, 2)
                assert not {"lat", "lon", "height", "ecef"} & set(st), st
        st = get("/v1/stations", role="admin").json()["stations"][0]
        assert abs(st["lat"] - lat) < 1e-8 and abs(st["lon"] - lon) < 1e-8 and abs(st["height"] - h) < 1e-3
        assert st["approx_lat"] == round(lat, 2)
    finally:
        (home / "cors_status.json").unlink()
