"""Raster layers: restricted areas masked, elevation relativised and rounded, resampled through the same offset
as the vectors, written as a cloud-optimised GeoTIFF; and `mapsvc publish --raster` attaches it."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from desensitize import desensitize_raster, get_provider, read_restricted_areas
from lanelets.projection import local_to_lonlat, lonlat_to_utm
from test_desensitize import YIZHUANG, restricted_gpkg

PX = 1.0  # metres


def _write(path, data, name):
    """A 1 m raster in UTM 50N covering local x -50..350 m, y -100..100 m around Yizhuang."""
    lon0, lat0 = YIZHUANG[1], YIZHUANG[0]
    e0, n0 = lonlat_to_utm(lon0, lat0, 32650)
    transform = from_origin(float(e0) - 50, float(n0) + 100, PX, PX)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="float32", crs="EPSG:32650", transform=transform, nodata=-9999) as dst:
        dst.write(data.astype(np.float32), 1)
        dst.set_band_description(1, name)
    return path


def _sample(cog: bytes, lon, lat):
    with MemoryFile(cog) as mem, mem.open() as src:
        assert src.crs.to_epsg() == 4326
        vals = np.array([v[0] for v in src.sample(list(zip(lon, lat)))])
        return np.where(vals == src.nodata, np.nan, vals), src


@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    d = tmp_path_factory.mktemp("zones")
    return read_restricted_areas(restricted_gpkg(d / "zones.gpkg"))


def test_intensity_follows_the_offset_and_restricted_areas_are_masked(tmp_path, zones):
    data = np.full((200, 400), 10.0)
    data[90:110, 90:110] = 200.0  # a bright 20 m square at local x 40..60, y -10..10
    src = _write(tmp_path / "intensity.tif", data, "intensity")
    p = get_provider("gcj02")
    cog, info = desensitize_raster(src, p, restricted=zones)
    assert info["elevation"] is False and info["masked_pixels"] > 0
    with MemoryFile(cog) as mem, mem.open() as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    true_lon, true_lat = local_to_lonlat(np.array([50.0, 200.0, 300.0]), np.array([0.0, 0.0, 50.0]), *YIZHUANG)
    off_lon, off_lat = p.forward(true_lon, true_lat)
    v_off, _ = _sample(cog, off_lon, off_lat)
    v_true, _ = _sample(cog, true_lon[:1], true_lat[:1])
    assert v_off[0] == pytest.approx(200.0, abs=1e-3)  # the square moved with the offset ...
    assert not v_true[0] == pytest.approx(200.0, abs=50)  # ... and is not at its true position (~530 m away)
    assert np.isnan(v_off[1])  # inside the restricted area: masked
    assert v_off[2] == pytest.approx(10.0, abs=1e-3)


def test_elevation_is_relative_and_rounded(tmp_path):
    yy, xx = np.mgrid[0:200, 0:400]
    data = 31.37 + 0.0123 * xx + 0.0071 * yy
    src = _write(tmp_path / "ground_elevation.tif", data, "elevation")
    cog, info = desensitize_raster(src, get_provider("gcj02"), elevation_step_m=0.5)
    assert info["elevation"] is True
    with MemoryFile(cog) as mem, mem.open() as ds:
        out = ds.read(1, masked=True).compressed()
    assert out.min() == 0.0 and out.max() < 8  # absolute datum gone: ~31 m removed
    assert np.allclose(out / 0.5, np.round(out / 0.5))



def test_publish_attaches_desensitised_raster(tmp_path):
    import os
    import subprocess
    import sys

    from test_desensitize import REPO, build_fixture
    from tiles import open_store

    build_fixture(tmp_path / "f.osm")
    gpkg = restricted_gpkg(tmp_path / "z.gpkg")
    tif = _write(tmp_path / "ground_elevation.tif", np.full((200, 400), 42.0), "elevation")
    env = {**os.environ, "MAPSVC_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "mapsvc", "publish", str(tmp_path / "f.osm"), "--release", "r",
                        "--level", "15", "--restricted-areas", str(gpkg), "--raster", str(tif)],
                       capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    store = open_store(tmp_path / "home" / "store")
    info = store.manifest("r")["desensitisation"]["rasters"][0]
    assert info["attachment"] == "raster/ground_elevation.tif" and info["elevation"] and info["masked_pixels"] > 0
    cog = store.attachment("r", "raster/ground_elevation.tif")  # public: vehicles may fetch it
    with MemoryFile(cog) as mem, mem.open() as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.read(1, masked=True).max() == 0.0  # a flat 42 m surface becomes 0 m relative
