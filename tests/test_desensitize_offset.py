"""Offset providers: GCJ-02 against the published vectors, its region test and inverse; the ctypes vendor
plug-in with a tiny library compiled here; entry-point registration; profiles."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from desensitize import DesensitizeError, check_profile, get_provider
from desensitize.provider import available

REPO = Path(__file__).resolve().parents[1]

# regulations.md §4.6: (WGS-84 lng, lat) -> (GCJ-02 lng, lat), tolerance in degrees
VECTORS = [
    ((121.5272106, 31.1774276), (121.531541859215, 31.17530398364597), 1e-9),
    ((113.912316, 22.543847), (113.9171764808363, 22.540796131694766), 1e-9),
    ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069), 1e-9),
    ((116.404, 39.915), (116.41024449916938, 39.91640428150164), 1e-9),
    ((123.0, 45.0), (123.00607541, 45.00197815), 1e-7),
    ((114.0527534, 22.5458236), (114.0578659, 22.5431014), 1e-5),
    ((116.4011517, 39.9028057), (116.4074002, 39.9042136), 1e-5),
    ((110.1939936, 20.046109), (110.1983008, 20.0440074), 1e-5),
    ((121.4691633, 31.2323443), (121.4737061, 31.2304194), 1e-5),
]


@pytest.mark.parametrize("precision", ["fast", "exact"])
def test_gcj02_published_vectors(precision):
    p = get_provider("gcj02", precision=precision)
    wgs = np.array([v[0] for v in VECTORS])
    gcj = np.array([v[1] for v in VECTORS])
    tol = np.array([v[2] for v in VECTORS])
    lon, lat = p.forward(wgs[:, 0], wgs[:, 1])
    assert (np.abs(lon - gcj[:, 0]) <= tol).all() and (np.abs(lat - gcj[:, 1]) <= tol).all()
    # vectors 1-4 reproduce the formula exactly (0 mm residual): the float64 path to 1e-11 degrees
    if precision == "exact":
        assert np.abs(lon[:4] - gcj[:4, 0]).max() < 1e-11 and np.abs(lat[:4] - gcj[:4, 1]).max() < 1e-11


@pytest.mark.parametrize("region", ["polygon", "box-gcoord", "box-wandergis"])
def test_out_of_china_identity(region):
    p = get_provider("gcj02", region=region)
    lon = np.array([183.0, -0.1, 8.4, 139.7, 60.0])
    lat = np.array([45.0, 51.5, 49.0, 35.7, 40.0])
    f_lon, f_lat = p.forward(lon, lat)
    assert np.array_equal(f_lon, lon) and np.array_equal(f_lat, lat)


def test_region_polygon_is_finer_than_the_box():
    poly, box = get_provider("gcj02"), get_provider("gcj02", region="box-gcoord")
    # Hong Kong, Macau, Taipei, Seoul, Ulaanbaatar: inside the common box, outside the outline
    lon = np.array([114.17, 113.54, 121.56, 126.98, 106.92])
    lat = np.array([22.30, 22.19, 25.04, 37.57, 47.92])
    assert not poly.region.contains(lon, lat).any()
    assert box.region.contains(lon, lat).all()
    # pilot zones and Haikou are inside both; computed pilot vectors of regulations.md §4.6
    pilots = [((116.5055, 39.7950), (116.51147179052433, 39.79619811186652)),
              ((114.3500, 22.6900), (114.3549211793868, 22.68729347728431)),
              ((110.3300, 20.0300), (110.33436811051284, 20.027952291737968))]
    a = np.array([v[0] for v in pilots])
    b = np.array([v[1] for v in pilots])
    lon2, lat2 = poly.forward(a[:, 0], a[:, 1])
    assert np.abs(lon2 - b[:, 0]).max() < 1e-9 and np.abs(lat2 - b[:, 1]).max() < 1e-9
    with pytest.raises(DesensitizeError, match="offset region"):
        get_provider("gcj02", region="somewhere")


def test_region_from_a_gdal_layer(tmp_path):
    f = tmp_path / "zone.geojson"
    f.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                 "geometry": {"type": "Polygon", "coordinates": [[[116, 39], [117, 39], [117, 40], [116, 40], [116, 39]]]}}]}))
    p = get_provider("gcj02", region=str(f))
    lon, lat = p.forward(np.array([116.5, 121.47]), np.array([39.5, 31.23]))
    assert lon[0] != 116.5 and (lon[1], lat[1]) == (121.47, 31.23)


def test_inverse_of_forward_within_1mm_over_the_region():
    p = get_provider("gcj02")
    g = np.mgrid[73.0:135.0:0.1, 18.0:54.0:0.1].reshape(2, -1)
    inside = p.region.contains(g[0], g[1])
    lon, lat = g[0][inside], g[1][inside]
    assert len(lon) > 50_000
    f_lon, f_lat = p.forward(lon, lat)
    assert np.hypot(f_lon - lon, f_lat - lat).min() > 1e-4  # every point really moved (> ~10 m)
    b_lon, b_lat = p.inverse(f_lon, f_lat)
    err_m = np.hypot((b_lon - lon) * 111320 * np.cos(np.radians(lat)), (b_lat - lat) * 110574)
    assert err_m.max() < 1e-3, err_m.max()


# -- the ctypes vendor plug-in ---------------------------------------------------------------------------------
VENDOR_C = r"""
#include <math.h>
#include <stddef.h>
/* A test stand-in for a certified library: the public GCJ-02 formula behind the mapsvc offset ABI v1. */
static const double A = 6378245.0, EE = 0.00669342162296594323;
static void delta(double lon, double lat, double *dlon, double *dlat) {
    double x = lon - 105.0, y = lat - 35.0, pi = M_PI;
    double tl = -100.0 + 2.0*x + 3.0*y + 0.2*y*y + 0.1*x*y + 0.2*sqrt(fabs(x));
    tl += (20.0*sin(6.0*x*pi) + 20.0*sin(2.0*x*pi)) * 2.0/3.0;
    tl += (20.0*sin(y*pi) + 40.0*sin(y/3.0*pi)) * 2.0/3.0;
    tl += (160.0*sin(y/12.0*pi) + 320.0*sin(y*pi/30.0)) * 2.0/3.0;
    double tg = 300.0 + x + 2.0*y + 0.1*x*x + 0.1*x*y + 0.1*sqrt(fabs(x));
    tg += (20.0*sin(6.0*x*pi) + 20.0*sin(2.0*x*pi)) * 2.0/3.0;
    tg += (20.0*sin(x*pi) + 40.0*sin(x/3.0*pi)) * 2.0/3.0;
    tg += (150.0*sin(x/12.0*pi) + 300.0*sin(x/30.0*pi)) * 2.0/3.0;
    double rad = lat/180.0*pi, magic = 1.0 - EE*sin(rad)*sin(rad), sq = sqrt(magic);
    *dlat = (tl*180.0) / ((A*(1.0-EE)) / (magic*sq) * pi);
    *dlon = (tg*180.0) / (A/sq*cos(rad)*pi);
}
int mapsvc_offset_abi_version(void) { return 1; }
const char *mapsvc_offset_name(void) { return "test-vendor"; }
const char *mapsvc_offset_version(void) { return "0.1"; }
const char *mapsvc_offset_certificate(void) { return CERT; }
int mapsvc_offset_forward(size_t n, const double *lon, const double *lat, double *olon, double *olat) {
    for (size_t i = 0; i < n; i++) {
        if (!(lat[i] >= -90.0 && lat[i] <= 90.0)) return 22;
        double dx, dy; delta(lon[i], lat[i], &dx, &dy);
        olon[i] = lon[i] + dx; olat[i] = lat[i] + dy;
    }
    return 0;
}
int mapsvc_offset_inverse(size_t n, const double *lon, const double *lat, double *olon, double *olat) {
    for (size_t i = 0; i < n; i++) {
        double wx = lon[i], wy = lat[i];
        for (int k = 0; k < 30; k++) {
            double dx, dy; delta(wx, wy, &dx, &dy);
            double ex = wx + dx - lon[i], ey = wy + dy - lat[i];
            wx -= ex; wy -= ey;
            if (fabs(ex) < 1e-12 && fabs(ey) < 1e-12) break;
        }
        olon[i] = wx; olat[i] = wy;
    }
    return 0;
}
"""


def build_vendor_lib(directory: Path, cert: str = "TEST-CERT-0001") -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc absent: cannot build the test vendor library")
    c = directory / "vendor.c"
    c.write_text(VENDOR_C)
    so = directory / "libtestoffset.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", f'-DCERT="{cert}"', "-o", str(so), str(c), "-lm"],
                   check=True, capture_output=True)
    return so


@pytest.fixture(scope="module")
def vendor_lib(tmp_path_factory):
    return build_vendor_lib(tmp_path_factory.mktemp("vendor"))


def test_vendor_plugin_through_ctypes(vendor_lib):
    sha = hashlib.sha256(vendor_lib.read_bytes()).hexdigest()
    unpinned = get_provider("vendor", library=str(vendor_lib))
    assert unpinned.certified is False  # the library's own claim is not enough
    pinned = get_provider("vendor", library=str(vendor_lib), sha256=sha)
    assert pinned.certified is True and pinned.describe()["certificate"] == "TEST-CERT-0001"
    assert pinned.describe()["library_sha256"] == sha and str(vendor_lib) not in json.dumps(pinned.describe())
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(100, 120, 10_000), rng.uniform(22, 40, 10_000)
    v_lon, v_lat = pinned.forward(lon, lat)
    g_lon, g_lat = get_provider("gcj02", region="box-gcoord", precision="exact").forward(lon, lat)
    assert np.abs(v_lon - g_lon).max() < 1e-11 and np.abs(v_lat - g_lat).max() < 1e-11
    b_lon, b_lat = pinned.inverse(v_lon, v_lat)
    assert np.abs(b_lon - lon).max() < 1e-9
    with pytest.raises(DesensitizeError, match="error 22"):
        pinned.forward(np.array([0.0]), np.array([np.nan]))
    with pytest.raises(DesensitizeError, match="does not match"):
        get_provider("vendor", library=str(vendor_lib), sha256="0" * 64)
    with pytest.raises(DesensitizeError, match="not found"):
        get_provider("vendor", library=str(vendor_lib) + ".missing")
    # profiles: production takes only the pinned (certified) library
    assert check_profile("production", pinned)["certified"] is True
    with pytest.raises(DesensitizeError, match="not certified"):
        check_profile("production", unpinned)
    with pytest.raises(DesensitizeError, match="not certified"):
        check_profile("production", get_provider("gcj02"))
    assert "PILOT TEST" in check_profile("pilot-test", get_provider("gcj02"))["notice"]


def test_not_a_plugin_library(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc absent")
    c = tmp_path / "x.c"
    c.write_text("int something(void) { return 1; }\n")
    so = tmp_path / "libx.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(c)], check=True)
    with pytest.raises(DesensitizeError, match="not a mapsvc offset library"):
        get_provider("vendor", library=str(so))


def test_providers_registered_by_entry_point(tmp_path, monkeypatch):
    """A third-party distribution registers a provider in the mapsvc.offset_providers group."""
    pkg = tmp_path / "shiftoffset.py"
    pkg.write_text(textwrap.dedent("""
        from desensitize.provider import OffsetProvider
        class Shift(OffsetProvider):
            name, version, certified = "shift", "1", False
            def __init__(self, dlon=0.001):
                self.dlon = dlon
            def forward(self, lon, lat):
                return lon + self.dlon, lat.copy()
    """))
    dist = tmp_path / "shiftoffset-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shiftoffset\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mapsvc.offset_providers]\nshift = shiftoffset:Shift\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert {"gcj02", "vendor", "shift"} <= set(available())
    p = get_provider("shift", dlon=0.5)
    assert p.forward(np.array([1.0]), np.array([2.0]))[0][0] == 1.5
    with pytest.raises(DesensitizeError, match="unknown offset provider 'nope'"):
        get_provider("nope")
    with pytest.raises(DesensitizeError, match="bad options"):
        get_provider("shift", colour="red")


def test_production_publish_with_certified_vendor_cli(vendor_lib, tmp_path):
    """`mapsvc publish --profile production` refuses gcj02 and accepts the pinned vendor library named in
    $MAPSVC_HOME/desensitize.yaml; the release records provider and certification."""
    from test_desensitize import build_fixture, restricted_gpkg

    home = tmp_path / "home"
    home.mkdir()
    build_fixture(tmp_path / "f.osm")
    restricted_gpkg(tmp_path / "z.gpkg")
    sha = hashlib.sha256(vendor_lib.read_bytes()).hexdigest()
    (home / "desensitize.yaml").write_text(
        f"profile: production\nproviders:\n  vendor: {{library: '{vendor_lib}', sha256: '{sha}'}}\n")
    env = {**os.environ, "MAPSVC_HOME": str(home)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "mapsvc", *map(str, a)], capture_output=True,
                                    text=True, env=env, timeout=120, cwd=REPO)
    r = run("publish", tmp_path / "f.osm", "--release", "p0", "--level", "15")
    assert r.returncode == 2 and "not certified" in r.stderr  # config default provider is gcj02
    r = run("publish", tmp_path / "f.osm", "--release", "p1", "--level", "15", "--offset-provider", "vendor",
            "--restricted-areas", tmp_path / "z.gpkg")
    assert r.returncode == 0, r.stderr
    from tiles import open_store

    d = open_store(home / "store").manifest("p1")["desensitisation"]
    assert d["profile"] == "production" and d["certified"] is True and d["notice"] is None
    assert d["offset"]["name"] == "vendor" and d["offset"]["certificate"] == "TEST-CERT-0001"
