"""Area queries at the antimeridian and the poles (issue 14 item 8), checked against a brute-force geodesic
oracle (pyproj distances to points along every tile edge), on a release view built from real grid tile ids."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pyproj import Geod

from tiles.view import ReleaseView
from tiles.grid import point_to_tile, tile_bboxes

LEVEL = 12
GEOD = Geod(ellps="WGS84")


def view_of(ids) -> ReleaseView:
    tiles = [{"id": int(t), "sha256": f"{i:064x}", "bytes": 1} for i, t in enumerate(ids)]
    return ReleaseView.of("am", json.dumps({"level": LEVEL, "tiles": tiles}).encode())


@pytest.fixture(scope="module")
def antimeridian():
    """Every level-12 tile within about 1.5 degrees of (39.8 N, 180), on both sides, and two far-away tiles."""
    size = 360.0 / 2 ** (LEVEL + 1)
    lons = np.concatenate([np.arange(178.5, 180.0, size), np.arange(-180.0, -178.5, size)]) + size / 2
    lons = lons[np.abs(lons) < 180.0]
    lats = np.arange(38.6, 41.0, size) + size / 2
    lo, la = np.meshgrid(lons, lats)
    ids = set(np.ravel(point_to_tile(lo.ravel(), la.ravel(), LEVEL)).tolist())
    far = {point_to_tile(120.0, 39.8, LEVEL), point_to_tile(-130.0, 39.8, LEVEL)}
    return view_of(sorted(ids | far)), far


def distance_to_tiles(view: ReleaseView, lon: float, lat: float, samples: int = 40) -> np.ndarray:
    """Geodesic distance (m) from the point to the nearest of many points along each tile's edges; 0 inside."""
    b = view.bboxes
    t = np.linspace(0.0, 1.0, samples)
    pts = []
    for x0, y0, x1, y1 in ((0, 1, 2, 1), (2, 1, 2, 3), (2, 3, 0, 3), (0, 3, 0, 1)):
        pts.append((b[:, [x0]] + (b[:, [x1]] - b[:, [x0]]) * t, b[:, [y0]] + (b[:, [y1]] - b[:, [y0]]) * t))
    px = np.concatenate([p[0] for p in pts], axis=1)
    py = np.concatenate([p[1] for p in pts], axis=1)
    _, _, d = GEOD.inv(np.full(px.size, lon), np.full(px.size, lat), px.ravel(), py.ravel())
    dist = d.reshape(px.shape).min(axis=1)
    x = (lon + 180.0) % 360.0 - 180.0
    inside = (b[:, 0] <= x) & (x < b[:, 2]) & (b[:, 1] <= lat) & (lat < b[:, 3])
    return np.where(inside, 0.0, dist)


@pytest.mark.parametrize("lon", [180.0, -180.0, 179.99, -179.99])
@pytest.mark.parametrize("radius", [1000.0, 50000.0])
def test_circle_at_the_antimeridian_matches_geodesic_oracle(antimeridian, lon, radius):
    view, far = antimeridian
    got = set(view.in_circle(39.8, lon, radius))
    dist = distance_to_tiles(view, lon, 39.8)
    must = set(np.flatnonzero(dist <= radius * 0.99).tolist())      # clearly inside
    must_not = set(np.flatnonzero(dist > radius * 1.01).tolist())   # clearly outside
    assert got, "no tile returned"
    assert must <= got, f"missing {len(must - got)} tiles within {radius} m"
    assert not (got & must_not), f"{len(got & must_not)} tiles farther than {radius} m returned"
    ids = {int(view.ids[i]) for i in got}
    assert not ids & far
    # both sides of the antimeridian for a circle centred on it
    wests = view.bboxes[sorted(got), 0]
    if abs(lon) == 180.0:
        assert (wests < 0).any() and (wests > 0).any()


def test_bbox_across_the_antimeridian(antimeridian):
    view, far = antimeridian
    rows = view.in_bbox(179.5, 39.5, -179.5, 40.0)   # west > east: crosses
    b = view.bboxes[rows]
    assert len(rows) > 0 and (b[:, 0] < 0).any() and (b[:, 0] > 0).any()
    # every returned tile touches [179.5, 180] or [-180, -179.5]; every such tile is returned
    touches = lambda bb: ((bb[:, 0] <= 180.0) & (bb[:, 2] > 179.5) | (bb[:, 0] <= -179.5) & (bb[:, 2] > -180.0)) \
        & (bb[:, 1] <= 40.0) & (bb[:, 3] > 39.5)
    assert touches(b).all()
    assert sorted(rows) == sorted(np.flatnonzero(touches(view.bboxes)).tolist())
    assert not {int(view.ids[i]) for i in rows} & far


def test_circle_holding_a_pole_is_a_cap():
    size = 360.0 / 2 ** (LEVEL + 1)
    lons = np.arange(-180.0, 180.0, 3.0) + size / 2
    ids = sorted(set(np.ravel(point_to_tile(lons, np.full(len(lons), 89.99), LEVEL)).tolist())
                 | {point_to_tile(0.0, 89.0, LEVEL)})
    view = view_of(ids)
    got = view.in_circle(89.9, 0.0, 20000.0)     # the north pole is 11 km away
    b = view.bboxes[got]
    assert len(got) == len(ids) - 1                  # every longitude near the pole, not the tile 100 km south
    assert (b[:, 3] > 89.7).all()


def test_http_bbox_crossing_the_antimeridian(get):
    """The route accepts west > east, and sizes the box the short way round."""
    r = get("/v1/releases/r1/tiles?bbox=179.5,39.5,-179.5,40")
    assert r.status_code == 200, r.text
    assert r.json()["tiles"] == [] and r.json()["query"]["bbox"] == [179.5, 39.5, -179.5, 40.0]
    assert get("/v1/releases/r1/tiles?bbox=170,39.5,-170,40").status_code == 400     # 20 degrees wide
    assert get("/v1/releases/r1/tiles?bbox=-180,39.5,180,40").status_code == 400     # the whole world
    r = get("/v1/releases/r1/tiles?lat=39.8&lon=180&radius_m=50000")
    assert r.status_code == 200 and r.json()["tiles"] == []                       # r1 is in Karlsruhe
