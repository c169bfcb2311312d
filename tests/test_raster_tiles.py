"""Raster layers per tile: `mapsvc publish --raster` cuts each desensitised layer into one COG per tile (aligned to
the tile grid), lists them in the signed manifest, the API serves them, the vehicle client verifies them, and
export writes them."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.windows import from_bounds

from desensitize import get_provider
from tiles.grid import tile_bbox, tile_size_deg
from tiles.raster import cut_raster

REPO = Path(__file__).resolve().parents[1]
LEVEL = 15
RES = 5e-5                                   # degrees per pixel (about 4-5 m)
WEST, NORTH, COLS, ROWS = 116.4905, 39.7960, 260, 160    # about 2.4 x 1.5 level-15 tiles, inside the pilot map
ZONE = (116.4950, 39.7900, 116.4975, 39.7920)          # restricted area, true coordinates (W, S, E, N)


def _geotiff(path: Path, bands: dict[str, np.ndarray]) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=COLS, height=ROWS, count=len(bands), dtype="float32",
                       crs="EPSG:4326", transform=from_origin(WEST, NORTH, RES, RES), nodata=-9999) as dst:
        for i, (name, data) in enumerate(bands.items(), start=1):
            dst.write(data.astype(np.float32), i)
            dst.set_band_description(i, name)
    return path


def _true_intensity(lon, lat):
    """The intensity band's field (linear, so bilinear resampling reproduces it exactly)."""
    return 20.0 + 0.37 * (np.asarray(lon) - WEST) / RES + 0.11 * (NORTH - np.asarray(lat)) / RES


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from lanelets import build

    d = tmp_path_factory.mktemp("rastertiles")
    build(REPO / "lanelets" / "roadspec" / "yizhuang_pilot.geojson", d / "pilot.osm")
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    lon = WEST + (cols + 0.5) * RES
    lat = NORTH - (rows + 0.5) * RES
    elevation = 31.3 + 0.05 * cols + 0.02 * rows                          # metres, a gentle slope
    _geotiff(d / "ground_elevation.tif", {"elevation": elevation})
    _geotiff(d / "lidar.tif", {"elevation": elevation + 0.4, "intensity": _true_intensity(lon, lat)})
    w, s, e, n = ZONE
    (d / "zones.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "zone"},
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}]}))
    env = {**os.environ, "MAPSVC_HOME": str(d / "home")}
    r = subprocess.run([sys.executable, "-m", "mapsvc", "publish", str(d / "pilot.osm"), "--release", "r1",
                        "--level", str(LEVEL), "--restricted-areas", str(d / "zones.geojson"),
                        "--raster", str(d / "ground_elevation.tif"), "--raster", str(d / "lidar.tif")],
                       capture_output=True, text=True, env=env, timeout=120, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
    from tiles import open_store

    store = open_store(d / "home" / "store")
    return {"dir": d, "home": d / "home", "store": store, "manifest": store.manifest("r1")}


def _open(data: bytes):
    mem = MemoryFile(data)
    return mem, mem.open()


def _tiles_with(manifest, layer):
    return {t["id"]: t["rasters"][layer] for t in manifest["tiles"] if layer in (t.get("rasters") or {})}


@pytest.mark.parametrize("layer", ["ground_elevation", "lidar"])
def test_every_tile_the_raster_covers_gets_an_aligned_cog_with_the_layers_values(published, layer):
    store, manifest = published["store"], published["manifest"]
    listed = _tiles_with(manifest, layer)
    whole_mem, whole = _open(store.attachment("r1", f"raster/{layer}.tif"))
    with whole_mem, whole:
        full = whole.read(masked=True)
        expected = set()
        for t in manifest["tiles"]:
            win = from_bounds(*tile_bbox(t["id"]), whole.transform).round_offsets().round_lengths()
            if not np.ma.getmaskarray(whole.read(window=win, masked=True, boundless=True)).all():
                expected.add(t["id"])
        assert len(expected) >= 2 and set(listed) == expected
        assert full.count() > 0
        for tid, entry in listed.items():
            data = store.attachment("r1", f"raster/{layer}/{tid}.tif")
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
            assert entry["path"] == f"rasters/{layer}/{tid}.tif"
            mem, ds = _open(data)
            with mem, ds:
                assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                assert ds.profile.get("tiled") and ds.block_shapes[0] == (256, 256)
                assert ds.crs.to_epsg() == 4326 and ds.count == whole.count and ds.nodata == whole.nodata
                # bounds are the tile's bbox: the desensitised grid is aligned to the tile grid
                assert np.allclose(ds.bounds, tile_bbox(tid), atol=ds.res[0] * 1e-6, rtol=0)
                assert ds.res == pytest.approx(whole.res, rel=1e-12)
                assert ds.width * ds.res[0] == pytest.approx(tile_size_deg(LEVEL), rel=1e-12)
                win = from_bounds(*ds.bounds, whole.transform)
                assert abs(win.col_off - round(win.col_off)) < 1e-6 and abs(win.row_off - round(win.row_off)) < 1e-6
                ref = whole.read(window=win.round_offsets().round_lengths(), boundless=True,
                                 fill_value=whole.nodata)
                np.testing.assert_array_equal(ds.read(), ref)  # not resampled a second time


def test_elevation_is_degraded_per_band_and_restricted_areas_are_masked(published):
    store, manifest = published["store"], published["manifest"]
    p = get_provider("gcj02")
    report = {r["layer"]: r for r in manifest["desensitisation"]["rasters"]}
    assert report["lidar"]["elevation_bands"] == [1] and report["lidar"]["masked_pixels"] > 0
    assert report["lidar"]["tiles"] == len(_tiles_with(manifest, "lidar"))
    # Points of the raster, true and offset; which tile each offset point falls in
    lon = np.array([116.4915, 116.4990, 116.5020, (ZONE[0] + ZONE[2]) / 2])
    lat = np.array([39.7950, 39.7930, 39.7895, (ZONE[1] + ZONE[3]) / 2])
    olon, olat = p.forward(lon, lat)
    from tiles.grid import point_to_tile

    listed = _tiles_with(manifest, "lidar")
    elev_all, seen = [], 0
    for i in range(len(lon)):
        tid = point_to_tile(olon[i], olat[i], LEVEL)
        mem, ds = _open(store.attachment("r1", f"raster/lidar/{tid}.tif"))
        with mem, ds:
            row, col = ds.index(olon[i], olat[i])
            elev, inten = ds.read()[:, row, col]
            if i == len(lon) - 1:  # the restricted area's centre, where the offset took it: masked
                assert elev == ds.nodata and inten == ds.nodata
                continue
            # intensity is not degraded, only moved: the pixel holds the field at its centre's true position
            tlon, tlat = p.inverse(*(np.array([v]) for v in ds.xy(row, col)))
            assert inten == pytest.approx(_true_intensity(tlon[0], tlat[0]), abs=1e-3)
            assert abs(inten - _true_intensity(lon[i], lat[i])) < 0.3  # within half a pixel of the point
            assert elev == np.round(elev) and 0 <= elev < 25  # relative to the layer minimum, 1 m steps
            elev_all.append(ds.read(1, masked=True).compressed())
            seen += tid in listed
    assert seen == len(lon) - 1
    vals = np.concatenate(elev_all)
    assert np.array_equal(vals, np.round(vals))


def test_cut_raster_skips_tiles_without_data_and_snaps_unaligned_sources(tmp_path):
    src = _geotiff(tmp_path / "i.tif", {"intensity": np.arange(ROWS * COLS, dtype=np.float32).reshape(ROWS, COLS)})
    from tiles.grid import tiles_for_bbox

    inside = tiles_for_bbox(WEST, NORTH - ROWS * RES, WEST + COLS * RES, NORTH, LEVEL)
    far = tiles_for_bbox(116.60, 39.90, 116.60, 39.90, LEVEL)
    out = cut_raster(src, inside + far, LEVEL)
    assert set(out) == set(inside) and len(inside) >= 4
    total = 0
    for tid, data in out.items():
        mem, ds = _open(data)
        with mem, ds:
            w, s, e, n = tile_bbox(tid)
            assert np.allclose(ds.bounds, (w, s, e, n), atol=ds.res[0] / 2 + 1e-12, rtol=0)  # within half a pixel
            total += int(ds.read(1, masked=True).count())
    assert total == ROWS * COLS  # tiles partition the source pixels: none lost, none twice


def test_api_serves_tile_rasters_with_etag_and_the_client_verifies_them(published, tmp_path):
    from api.conftest import LiveServer, assert_problem

    from tiles import signing
    from mapsvc.client import VehicleClient, VerificationError
    from tokens import TokenStore

    home, manifest = published["home"], published["manifest"]
    tokens = TokenStore(home / "tokens.sqlite")
    vehicle = tokens.create("vehicle", "raster-test")
    tokens.close()
    srv = LiveServer({"HOME": str(home), "RATE_LIMIT": "100000 per minute"})
    try:
        auth = {"Authorization": f"Bearer {vehicle}"}
        tid, entry = next(iter(_tiles_with(manifest, "lidar").items()))
        url = f"{srv.url}/v1/releases/r1/tiles/{tid}/rasters/lidar"
        r = requests.get(url, headers=auth, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/tiff")
        assert hashlib.sha256(r.content).hexdigest() == entry["sha256"]
        assert r.headers["ETag"] == f'"{entry["sha256"]}"' and "immutable" in r.headers["Cache-Control"]
        r304 = requests.get(url, headers={**auth, "If-None-Match": r.headers["ETag"]}, timeout=10)
        assert r304.status_code == 304 and not r304.content
        assert_problem(requests.get(url, timeout=10), 401)
        no_data = next(t["id"] for t in manifest["tiles"] if "lidar" not in (t.get("rasters") or {}))
        assert_problem(requests.get(f"{srv.url}/v1/releases/r1/tiles/{no_data}/rasters/lidar", headers=auth,
                                    timeout=10), 404)
        assert_problem(requests.get(f"{srv.url}/v1/releases/r1/tiles/{tid}/rasters/nope", headers=auth,
                                    timeout=10), 404)
        assert_problem(requests.get(f"{srv.url}/v1/releases/r1/tiles/{tid}/rasters/a.b", headers=auth,
                                    timeout=10), 400)
        assert_problem(requests.get(f"{srv.url}/v1/releases/r1/tiles/{tid}/rasters/..%2F..%2Faudit",
                                    headers=auth, timeout=10), (400, 404))
        # audit.json is a restricted attachment: no raster path reaches it
        assert_problem(requests.get(f"{srv.url}/v1/releases/r1/tiles/{tid}/rasters/audit", headers=auth,
                                    timeout=10), 404)

        lon, lat = (float(np.mean(tile_bbox(tid)[0::2])), float(np.mean(tile_bbox(tid)[1::2])))
        client = VehicleClient(srv.url, vehicle, tmp_path / "cache", key_id=signing.active_key_id(home))
        res = client.fetch(lat, lon, 300, "r1", layers=["lidar", "ground_elevation"])
        assert tid in res.rasters["lidar"] and res.rasters_downloaded == sum(map(len, res.rasters.values()))
        for layer, ids in res.rasters.items():
            for t in ids:
                cached = client.raster_path(layer, t)
                sha = next(e for e in manifest["tiles"] if e["id"] == t)["rasters"][layer]["sha256"]
                assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
        again = client.fetch(lat, lon, 300, "r1", layers=["lidar"])
        assert again.rasters_downloaded == 0 and again.rasters["lidar"] == res.rasters["lidar"]
        cli = subprocess.run([sys.executable, "-m", "mapsvc", "fetch", "--server", srv.url, "--token", vehicle,
                              "--lat", repr(lat), "--lon", repr(lon), "--radius-m", "300", "--release", "r1",
                              "--cache", str(tmp_path / "cli"), "--key-id", signing.active_key_id(home),
                              "--raster", "lidar"], capture_output=True, text=True, timeout=60, cwd=REPO,
                             check=False)
        assert cli.returncode == 0, cli.stderr
        out = json.loads(cli.stdout)
        assert out["rasters"] == {"lidar": res.rasters["lidar"]}
        assert out["rasters_downloaded"] == len(res.rasters["lidar"])
        assert len(list((tmp_path / "cli" / "rasters").glob("*.tif"))) == len(res.rasters["lidar"])

        # a raster the server alters is rejected and never cached
        cached = client.raster_path("lidar", tid)
        cached.unlink()
        bad = VehicleClient(srv.url, vehicle, tmp_path / "cache")
        orig = bad.http.get

        def tamper(u, **kw):
            resp = orig(u, **kw)
            if "/rasters/" in u:
                resp._content = resp.content[:-1] + bytes([resp.content[-1] ^ 1])
            return resp
        bad.http.get = tamper
        with pytest.raises(VerificationError, match="raster lidar"):
            bad.fetch(lat, lon, 300, "r1", layers=["lidar"])
        assert not cached.exists()
    finally:
        srv.close()


def test_export_writes_the_rasters_at_their_manifest_paths(published, tmp_path):
    store, manifest = published["store"], published["manifest"]
    out = tmp_path / "export"
    store.export("r1", out)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    n = 0
    for t in manifest["tiles"]:
        for entry in (t.get("rasters") or {}).values():
            assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
            n += 1
    assert n == sum(len(_tiles_with(manifest, layer)) for layer in ("lidar", "ground_elevation")) and n >= 4
    assert sorted(p.parent.name for p in (out / "rasters").glob("*/*.tif")).count("lidar") == \
        len(_tiles_with(manifest, "lidar"))
    assert store.verify("r1") == []


def test_publish_refuses_bad_or_duplicate_layer_names_before_any_work(published, tmp_path):
    d = published["dir"]
    bad = tmp_path / "bad name.tif"
    bad.write_bytes((d / "lidar.tif").read_bytes())
    dup = tmp_path / "lidar.tif"
    dup.write_bytes(bad.read_bytes())
    env = {**os.environ, "MAPSVC_HOME": str(tmp_path / "home")}
    for extra, needle in ((["--raster", str(bad)], "layer name 'bad name'"),
                          (["--raster", str(d / "lidar.tif"), "--raster", str(dup)], "'lidar' is already given")):
        r = subprocess.run([sys.executable, "-m", "mapsvc", "publish", str(d / "pilot.osm"), "--release", "x",
                            "--level", str(LEVEL), *extra], capture_output=True, text=True, env=env, timeout=60,
                           cwd=REPO, check=False)
        assert r.returncode == 2 and r.stderr.startswith("mapsvc: error:") and needle in r.stderr, r.stderr
    from tiles import open_store

    assert open_store(tmp_path / "home" / "store").releases() == []


def test_a_raster_only_change_shows_in_diff_and_delta(published, tmp_path):
    """Publish the same map again with the elevation raised in one corner: exactly the tiles whose raster
    changed are 'changed' (store diff and the API's /delta), the vector tiles being identical."""
    from mapsvc.api import create_app

    d = published["dir"]
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    elevation = 31.3 + 0.05 * cols + 0.02 * rows
    elevation[:, -40:] += 2.0  # the eastern edge only (the lowest point, the relative datum, stays)
    _geotiff(tmp_path / "ground_elevation.tif", {"elevation": elevation})
    env = {**os.environ, "MAPSVC_HOME": str(published["home"])}
    r = subprocess.run([sys.executable, "-m", "mapsvc", "publish", str(d / "pilot.osm"), "--release", "r1-dem2",
                        "--level", str(LEVEL), "--restricted-areas", str(d / "zones.geojson"),
                        "--raster", str(tmp_path / "ground_elevation.tif"), "--raster", str(d / "lidar.tif")],
                       capture_output=True, text=True, env=env, timeout=120, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
    store = published["store"]
    m1, m2 = store.manifest("r1"), store.manifest("r1-dem2")
    assert [t["sha256"] for t in m1["tiles"]] == [t["sha256"] for t in m2["tiles"]]  # vectors unchanged
    e1, e2 = _tiles_with(m1, "ground_elevation"), _tiles_with(m2, "ground_elevation")
    want = sorted(t for t in e1 if e1[t]["sha256"] != e2[t]["sha256"])
    assert want and len(want) < len(e1)
    diff = store.diff("r1", "r1-dem2")
    assert diff["changed"] == want and not diff["added"] and not diff["removed"]
    from tokens import TokenStore

    token = TokenStore(published["home"] / "tokens.sqlite").create("vehicle", "delta-car")
    app = create_app({"HOME": str(published["home"])})
    resp = app.test_client().get("/v1/releases/r1-dem2/delta?from=r1", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert sorted(e["id"] for e in resp.get_json()["changed"]) == want
