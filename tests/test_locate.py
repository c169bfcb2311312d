"""The vehicle on the map, on real maps: every shared Lanelet2 map moved into Beijing, published (GCJ-02 or
the vendor test library), served, fetched by the vehicle client, and positions sampled inside its drivable
lanelets located from CGCS2000 and from ITRF2014@2026.9. Truth comes from the moved map itself, through
lanelet2's own geometry (toArcCoordinates) and shapely polygons, never through the code under test."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from pyproj import Geod, Transformer

from conftest import LANELET2_DIR
from test_desensitize import BEIJING, move_to_beijing

REPO = Path(__file__).resolve().parents[1]
SHARED = sorted(LANELET2_DIR.glob("*.osm")) if LANELET2_DIR.is_dir() else []
GEOD = Geod(ellps="GRS80")
# Independent of lanelets.frames: PROJ's own ITRF2014 -> ITRF2008 -> ITRF97 lines after the plate motion
CGCS_TO_ITRF2014 = Transformer.from_pipeline(
    "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step +proj=cart +ellps=GRS80 "
    "+step +inv +proj=helmert +init=ITRF2008:ITRF97 +step +inv +proj=helmert +init=ITRF2014:ITRF2008 "
    "+step +proj=set +v_4=2000.0 +step +proj=helmert +init=ITRF2014:EURA +t_epoch=2000.0 +t_obs=2026.9 "
    "+step +proj=set +v_4=2026.9 +step +inv +proj=helmert +init=ITRF2014:EURA +t_epoch=2026.9 "
    "+step +inv +proj=cart +ellps=GRS80 +step +proj=unitconvert +xy_in=rad +xy_out=deg")


def to_itrf2014_2026_9(lon, lat, h):
    # plate motion 2000.0 -> 2026.9: forward model with time 2026.9 from t_epoch 2000.0
    t = Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step +proj=cart +ellps=GRS80 "
        "+step +inv +proj=helmert +init=ITRF2008:ITRF97 +step +inv +proj=helmert +init=ITRF2014:ITRF2008 "
        "+step +proj=set +v_4=2026.9 +step +proj=helmert +init=ITRF2014:EURA +t_epoch=2000.0 "
        "+step +inv +proj=cart +ellps=GRS80 +step +proj=unitconvert +xy_in=rad +xy_out=deg")
    x, y, z, _ = t.transform(lon, lat, h, np.full(len(lon), 2000.0))
    return x, y, z


class Recorder(requests.Session):
    """What the server is sent (the session is the client's real one; nothing is mocked)."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def get(self, url, **kw):
        self.sent.append((url, dict(kw.get("params") or {})))
        return super().get(url, **kw)


def sample_truth(baseline: Path, origin, n_max=150, seed=0):
    """Positions inside drivable lanelets of the (unpublished) moved map: lon/lat (CGCS2000), lanelet id,
    signed lateral and along from lanelet2's toArcCoordinates; only points inside exactly one drivable
    lanelet polygon (shapely), so the right answer is unique."""
    import lanelet2
    import shapely
    from lanelet2.core import BasicPoint2d, BasicPoint3d
    from lanelet2.traffic_rules import Locations, Participants, create

    from lanelets.model import load_lanelet2

    lmap, projector, _ = load_lanelet2(baseline, origin)
    rules = create(Locations.Germany, Participants.Vehicle)
    lls = [ll for ll in lmap.laneletLayer if rules.canPass(ll) and len(ll.centerline) > 1]
    polys = np.array([shapely.Polygon([(p.x, p.y) for p in ll.polygon2d()]) for ll in lls])
    tree = shapely.STRtree(polys)
    rng = np.random.default_rng(seed)
    rows, ids = [], []
    for k in rng.permutation(len(lls))[: n_max * 2]:
        ll = lls[k]
        c = lanelet2.geometry.to2D(ll.centerline)
        length = lanelet2.geometry.length(c)
        s = rng.uniform(0.2, 0.8) * length
        p = lanelet2.geometry.interpolatedPointAtDistance(c, s)
        q = lanelet2.geometry.interpolatedPointAtDistance(c, min(length, s + 0.5))
        d = np.array([q.x - p.x, q.y - p.y])
        if np.hypot(*d) == 0:
            continue
        left = np.array([-d[1], d[0]]) / np.hypot(*d)
        off = rng.uniform(-0.6, 0.6)
        x, y = p.x + off * left[0], p.y + off * left[1]
        hits = tree.query(shapely.points(x, y), predicate="within")
        if len(hits) != 1 or hits[0] != k:
            continue
        arc = lanelet2.geometry.toArcCoordinates(c, BasicPoint2d(x, y))
        g = projector.reverse(BasicPoint3d(x, y, 0.0))
        # lane heading: true azimuth along the centre line there (geodesic between two points 0.5 m apart)
        a = lanelet2.geometry.interpolatedPointAtDistance(c, max(0.0, arc.length - 0.25))
        b = lanelet2.geometry.interpolatedPointAtDistance(c, min(length, arc.length + 0.25))
        ga, gb = projector.reverse(BasicPoint3d(a.x, a.y, 0.0)), projector.reverse(BasicPoint3d(b.x, b.y, 0.0))
        heading = GEOD.inv(ga.lon, ga.lat, gb.lon, gb.lat)[0] % 360.0
        rows.append((g.lon, g.lat, arc.distance, arc.length, heading))
        ids.append(ll.id)  # ids up to 2^63: kept out of the float array
        if len(rows) >= n_max:
            break
    a = np.array(rows)
    sample_truth.heading = a[:, 4]
    return a[:, 0], a[:, 1], np.array(ids, dtype=np.int64), a[:, 2], a[:, 3]


def _publish_and_serve(moved, origin, home, monkeypatch, yaml_text=None, level=14, name="b1"):
    from tiles import signing
    from mapsvc.pipeline import publish
    from mapsvc.tokens import TokenStore
    from api.conftest import LiveServer

    home.mkdir(parents=True, exist_ok=True)
    if yaml_text:
        (home / "desensitize.yaml").write_text(yaml_text)
    monkeypatch.setenv("MAPSVC_HOME", str(home))
    manifest = publish(moved, name, str(home / "store"), level, origin)
    tokens = TokenStore(home / "tokens.sqlite")
    token = tokens.create("vehicle", "car")
    tokens.close()
    srv = LiveServer({"HOME": str(home), "RATE_LIMIT": "100000 per minute"})
    return manifest, srv, token, signing.active_key_id(home)


@pytest.fixture
def live(tmp_path, monkeypatch):
    servers = []

    def start(*a, **kw):
        out = _publish_and_serve(*a, **kw)
        servers.append(out[1])
        return out
    yield start
    for s in servers:
        s.close()


def _fetch(srv, token, key_id, cache, lon, lat, vehicle_home=None):
    from mapsvc.client import VehicleClient

    rec = Recorder()
    c = VehicleClient(srv.url, token, cache, key_id=key_id, session=rec)
    c.home = vehicle_home
    # the area: around the middle of the samples, given as a true CGCS2000 position
    mid_lon, mid_lat = float(np.median(lon)), float(np.median(lat))
    radius = float(max(GEOD.inv(np.full(len(lon), mid_lon), np.full(len(lat), mid_lat), lon, lat)[2])) + 300
    c.fetch(mid_lat, mid_lon, radius, frame="CGCS2000")
    return c, rec, (mid_lat, mid_lon)


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("src", SHARED, ids=lambda p: p.stem)
def test_locate_on_shared_maps_moved_into_beijing(src, tmp_path, live, monkeypatch):
    moved, baseline = tmp_path / "moved.osm", tmp_path / "baseline.osm"
    origin = move_to_beijing(src, moved, baseline)
    lon, lat, ids, lateral, along = sample_truth(baseline, origin or None)
    heading = sample_truth.heading
    assert len(ids) >= min(20, len(set(ids))), "too few sample positions"
    manifest, srv, token, key_id = live(moved, origin, tmp_path / "home", monkeypatch)
    assert manifest["frame"]["horizontal"] == "CGCS2000" and manifest["frame"]["offset"]["name"] == "gcj02"
    c, rec, true_mid = _fetch(srv, token, key_id, tmp_path / "cache", lon, lat)

    # the tile service never saw the true position: only the offset one (GCJ-02 moves Beijing ~500 m)
    asked = [p for _, p in rec.sent if "lat" in p]
    assert asked
    for p in asked:
        assert GEOD.inv(true_mid[1], true_mid[0], float(p["lon"]), float(p["lat"]))[2] > 100

    h = np.full(len(lon), 45.0)
    got = c.locate(lat, lon, h, frame="CGCS2000")
    assert np.array_equal(got.lanelet, ids), np.flatnonzero(got.lanelet != ids)[:5]
    assert np.abs(got.lateral_m - lateral).max() < 0.05
    # along is measured in the published map: GCJ-02 stretches it by up to ~3e-3 (its local scale error)
    assert (np.abs(got.along_m - along) < 0.05 + 5e-3 * along).all()
    dh = (got.heading_deg - heading + 180.0) % 360.0 - 180.0
    assert np.percentile(np.abs(dh), 90) < 1.0 and np.abs(dh).max() < 10.0  # vertices: segment directions

    ilon, ilat, ih = to_itrf2014_2026_9(lon, lat, h)
    assert np.median(GEOD.inv(lon, lat, ilon, ilat)[2]) > 0.5  # the frames really differ here
    got = c.locate(ilat, ilon, ih, frame="ITRF2014", epoch=2026.9)
    assert np.array_equal(got.lanelet, ids)
    assert np.abs(got.lateral_m - lateral).max() < 0.15
    # taking ITRF2014 positions for CGCS2000 is the error this feature removes: it moves them by ~0.8 m
    wrong = c.locate(ilat, ilon, ih, frame="CGCS2000")
    ok = wrong.lanelet == ids
    assert np.nanmax(np.abs(wrong.lateral_m[ok] - lateral[ok])) > 0.15 or not ok.all()


@pytest.fixture(scope="module")
def vendor_lib(tmp_path_factory):
    from test_desensitize_offset import build_vendor_lib

    return build_vendor_lib(tmp_path_factory.mktemp("vendor"))


def _kashiwanoha():
    p = LANELET2_DIR / "tier4_kashiwanoha_lanelet2_map.osm"
    if not p.exists():
        pytest.skip("../shared/data/lanelet2 absent: real-map locate tests skipped")
    return p


@pytest.mark.shared_data
def test_vendor_provider_and_refusals(vendor_lib, tmp_path, live, monkeypatch):
    from mapsvc.client import VerificationError
    from mapsvc.locate import LocateError, MapFrame

    moved, baseline = tmp_path / "moved.osm", tmp_path / "baseline.osm"
    origin = move_to_beijing(_kashiwanoha(), moved, baseline)
    lon, lat, ids, lateral, _ = sample_truth(baseline, origin, n_max=60)
    sha = hashlib.sha256(vendor_lib.read_bytes()).hexdigest()
    yaml_text = f"profile: production\noffset_provider: vendor\nproviders:\n  vendor: {{library: '{vendor_lib}', sha256: '{sha}'}}\n"
    manifest, srv, token, key_id = live(moved, origin, tmp_path / "home", monkeypatch, yaml_text=yaml_text)
    assert manifest["frame"]["offset"] == {"name": "vendor", "version": "0.1", "certified": True}

    car = tmp_path / "car"  # the vehicle's own configuration names its copy of the certified library
    car.mkdir()
    (car / "desensitize.yaml").write_text(f"providers:\n  vendor: {{library: '{vendor_lib}', sha256: '{sha}'}}\n")
    c, _, _ = _fetch(srv, token, key_id, tmp_path / "cache", lon, lat, vehicle_home=car)
    ilon, ilat, ih = to_itrf2014_2026_9(lon, lat, np.zeros(len(lon)))
    got = c.locate(ilat, ilon, ih, frame="ITRF2014", epoch=2026.9)
    assert np.array_equal(got.lanelet, ids) and np.abs(got.lateral_m - lateral).max() < 0.15
    got = c.locate(lat, lon, frame="CGCS2000")
    assert np.array_equal(got.lanelet, ids) and np.abs(got.lateral_m - lateral).max() < 0.05

    # a vehicle without the vendor library refuses, it does not fall back to anything
    bare = tmp_path / "bare"
    bare.mkdir()
    c.home = bare
    with pytest.raises(LocateError, match="needs offset provider 'vendor', which this vehicle lacks"):
        c.locate(lat, lon)
    # another library under the same name refuses too
    other = vendor_lib.parent / "other"
    other.mkdir(exist_ok=True)
    from test_desensitize_offset import build_vendor_lib

    lib2 = build_vendor_lib(other, cert="OTHER-CERT")
    (bare / "desensitize.yaml").write_text(f"providers:\n  vendor: {{library: '{lib2}'}}\n")
    with pytest.raises(LocateError, match="library sha256"):
        c.locate(lat, lon)
    c.home = car

    # an unknown provider or no frame declaration in a manifest: refused
    m = json.loads(c.cache.joinpath("manifests", "b1.json").read_bytes())
    with pytest.raises(LocateError, match="declares no frame"):
        MapFrame.of({k: v for k, v in m.items() if k != "frame"}, car)
    m2 = json.loads(json.dumps(m))
    m2["frame"]["offset"]["name"] = "acme"
    with pytest.raises(LocateError, match="'acme', which is unknown here"):
        MapFrame.of(m2, car)
    # wrong frames from the vehicle: refused, never a silent wrong lanelet
    from lanelets.frames import FrameError

    with pytest.raises(FrameError, match="unknown frame"):
        c.locate(lat, lon, frame="ITRF2008")
    with pytest.raises(FrameError, match="need an epoch"):
        c.locate(lat, lon, frame="ITRF2014")
    with pytest.raises(FrameError, match="contradicts"):
        c.locate(lat, lon, frame="CGCS2000", epoch=2026.9)

    # a tampered frame declaration in the cache fails the signature
    path = c.cache / "manifests" / "b1.json"
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"horizontal":"CGCS2000"', b'"horizontal":"ITRF2014"'))
    assert path.read_bytes() != raw
    with pytest.raises(VerificationError, match="manifest rejected"):
        c.locate(lat, lon)
    r = subprocess.run([sys.executable, "-m", "mapsvc", "locate", "--cache", str(c.cache), "--lat", repr(float(lat[0])),
                        "--lon", repr(float(lon[0]))], capture_output=True, text=True, cwd=REPO, timeout=120,
                       env={**__import__("os").environ, "MAPSVC_HOME": str(car)})
    assert r.returncode == 2 and "manifest rejected" in r.stderr and r.stdout == ""
    path.write_bytes(raw)

    # the command line: one JSON line per position, from --lat/--lon and from an RTKLIB .pos file
    pos = tmp_path / "track.pos"
    lines = ["%  GPST                  latitude(deg) longitude(deg)  height(m)   Q  ns   sdn(m)   sde(m)   sdu(m)"]
    lines += [f"2026/11/24 03:00:{i:06.3f}   {la:14.9f} {lo:14.9f} {hh:10.4f}   1  12   0.0100   0.0100   0.0200"
              for i, (la, lo, hh) in enumerate(zip(ilat, ilon, ih))]
    pos.write_text("\n".join(lines) + "\n")
    env = {**__import__("os").environ, "MAPSVC_HOME": str(car)}
    r = subprocess.run([sys.executable, "-m", "mapsvc", "locate", "--cache", str(c.cache), "--pos", str(pos),
                        "--frame", "ITRF2014"], capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [row["lanelet"] for row in rows] == ids.tolist()
    assert set(rows[0]) == {"time", "lanelet", "lateral_m", "along_m", "heading_deg", "candidates"}
    assert rows[1]["time"] == "2026-11-24T03:00:01.000 GPST"
    assert max(abs(row["lateral_m"] - t) for row, t in zip(rows, lateral)) < 0.15
    r = subprocess.run([sys.executable, "-m", "mapsvc", "locate", "--cache", str(c.cache), "--lat", repr(float(lat[0])),
                        "--lon", repr(float(lon[0]))], capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["lanelet"] == int(ids[0])
    # the first symptom: `mapsvc fetch --match` at a true position now finds its lanelet
    r = subprocess.run([sys.executable, "-m", "mapsvc", "fetch", "--server", srv.url, "--token", token,
                        "--lat", repr(float(ilat[0])), "--lon", repr(float(ilon[0])), "--radius-m", "300",
                        "--cache", str(tmp_path / "cache2"), "--key-id", key_id, "--match",
                        "--frame", "ITRF2014", "--epoch", "2026.9"],
                       capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert int(ids[0]) in [x["id"] for x in json.loads(r.stdout)["lanelets_at_position"]]
