"""Reference frames: the pyproj chain ITRF20xx@t -> plate motion -> ITRF97@2000.0 (CGCS2000), checked against
IGN's published parameters, an independent PROJ route and the size of the Beijing shift."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from pyproj import Geod, Transformer
from pyproj.datadir import get_data_dir

from lanelets import frames
from lanelets.frames import FrameError, FrameTransform, transform

BEIJING = (39.9, 116.4)
GEOD = Geod(ellps="GRS80")
CART = Transformer.from_pipeline("+proj=cart +ellps=GRS80")


def _proj_line(init_file: str, entry: str) -> dict:
    text = (Path(get_data_dir()) / init_file).read_text()
    line = re.search(rf"^<{entry}>(.*)$", text, re.M).group(1)
    return {k: float(v) for k, v in re.findall(r"\+(\w+)=([-\d.e]+)", line)}


def test_proj_itrf97_entry_is_malformed_and_ours_is_the_published_one():
    problems = frames.proj_init_problems("ITRF2014")
    assert "ITRF97" in problems and any("+d=" in p for p in problems["ITRF97"])
    assert any("+dx0.0001" in p for p in problems["ITRF97"])
    assert not {k for k in problems if k.startswith("ITRF") and k != "ITRF97"}
    assert frames.proj_init_problems("ITRF2020") == {}
    # IGN publishes one line for ITRF97, ITRF96 and ITRF94; PROJ's ITRF96 copy of it is well formed
    itrf96 = _proj_line("ITRF2014", "ITRF96")
    ours = {k: v for k, v in frames.ITRF2014_TO_ITRF97.items() if v != 0.0}
    assert ours == itrf96


def test_helmert_at_2000_against_the_published_parameters():
    """ITRF2014 -> ITRF97 at 2000.0 evaluated by hand from IGN's table (mm, ppb, mas at 2010.0 plus rates)."""
    T = np.array([7.4, -0.5, -62.8]) * 1e-3 + np.array([0.1, -0.5, -3.3]) * 1e-3 * (2000.0 - 2010.0)
    D = (3.80 + 0.12 * (2000.0 - 2010.0)) * 1e-9
    R3 = np.radians((0.26 + 0.02 * (2000.0 - 2010.0)) / 3.6e6)
    lon, lat, h = 116.4, 39.9, 50.0
    X = np.array(CART.transform(lon, lat, h))
    expected = X + T + D * X + np.array([-R3 * X[1], R3 * X[0], 0.0])  # position-vector convention
    # at epoch 2000.0 the plate motion is nil: the chain is the Helmert alone
    olon, olat, oh = transform([lon], [lat], [h], "ITRF2014@2000.0", "CGCS2000")
    got = np.array(CART.transform(olon[0], olat[0], oh[0]))
    assert np.abs(got - expected).max() < 1e-4
    assert np.linalg.norm(got - X) > 0.02  # the Helmert does move the point (~3 cm)


def test_beijing_itrf2014_at_2026_9_is_0_77_m_from_cgcs2000():
    lon, lat, _ = transform([BEIJING[1]], [BEIJING[0]], [50.0], "ITRF2014@2026.9", "CGCS2000")
    az, _, d = GEOD.inv(BEIJING[1], BEIJING[0], lon[0], lat[0])
    assert 0.74 < d < 0.80, d
    # the Eurasia plate moves Beijing east-south-east: CGCS2000 lies back to the west-north-west
    assert -80 < az < -60, az


def test_an_independent_proj_route_agrees():
    """ITRF2014 -> ITRF2008 (PROJ ITRF2014 file) -> ITRF97 (PROJ ITRF2008 file, its ITRF97 line is sound)
    after the same plate motion: IGN's parameter sets are consistent at the mm level."""
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(100, 125, 200), rng.uniform(20, 45, 200)
    h = rng.uniform(0, 500, 200)
    t = np.full(200, 2026.9)
    ours = transform(lon, lat, h, "ITRF2014@2026.9", "CGCS2000")
    other = Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step +proj=cart +ellps=GRS80 "
        "+step +inv +proj=helmert +init=ITRF2014:EURA +t_epoch=2000.0 +step +proj=set +v_4=2000.0 "
        "+step +proj=helmert +init=ITRF2014:ITRF2008 +step +proj=helmert +init=ITRF2008:ITRF97 "
        "+step +inv +proj=cart +ellps=GRS80 +step +proj=unitconvert +xy_in=rad +xy_out=deg")
    olon, olat, oh, _ = other.transform(lon, lat, h, t)
    _, _, d = GEOD.inv(ours[0], ours[1], olon, olat)
    assert d.max() < 0.005 and np.abs(ours[2] - oh).max() < 0.005


def test_round_trips_and_per_point_epochs():
    rng = np.random.default_rng(4)
    lon, lat = rng.uniform(100, 125, 500), rng.uniform(20, 45, 500)
    epochs = rng.uniform(2015, 2030, 500)
    fwd = FrameTransform("ITRF2020", "CGCS2000")
    c = fwd(lon, lat, None, epochs)
    for i in (0, 17, 499):  # per-point epochs equal one transform per epoch
        one = FrameTransform("ITRF2020", "CGCS2000")(lon[i:i + 1], lat[i:i + 1], None, epochs[i])
        assert abs(one[0][0] - c[0][i]) < 1e-12 and abs(one[1][0] - c[1][i]) < 1e-12
    back = FrameTransform("CGCS2000", "ITRF2020", 2024.5)(c[0], c[1], c[2])
    again = FrameTransform("ITRF2020", "CGCS2000")(*back, 2024.5)
    _, _, d = GEOD.inv(c[0], c[1], again[0], again[1])
    assert d.max() < 1e-4
    # an epoch change within one frame is pure plate motion: ~3 cm/yr in Beijing
    a = transform([116.4], [39.9], [0.0], "ITRF2014@2020.0", "ITRF2014", dst_epoch=2030.0)
    d10 = GEOD.inv(116.4, 39.9, a[0][0], a[1][0])[2]
    assert 0.25 < d10 < 0.35


def test_frame_errors():
    with pytest.raises(FrameError, match="unknown frame 'ITRF2008'"):
        frames.parse("ITRF2008")
    with pytest.raises(FrameError, match="defined at epoch 2000.0"):
        frames.parse("CGCS2000@2026.9")
    with pytest.raises(FrameError, match="need an epoch"):
        FrameTransform("ITRF2014", "CGCS2000")([116.4], [39.9])
    with pytest.raises(FrameError, match="dynamic"):
        frames.declaration("ITRF2014")
    with pytest.raises(FrameError, match="not a decimal year"):
        frames.parse("ITRF2014@soon")
    d = frames.declaration(None, offset={"name": "gcj02", "version": "1", "certified": False, "region": "x"})
    assert d == {"horizontal": "CGCS2000", "epoch": 2000.0, "vertical": "ellipsoidal",
                 "offset": {"name": "gcj02", "version": "1", "certified": False}}


def test_cells_agree_with_the_exact_transform():
    rng = np.random.default_rng(5)
    n = 20_000
    lon, lat = rng.uniform(116.2, 116.8, n), rng.uniform(39.6, 40.1, n)
    h = rng.uniform(0, 100, n)
    t = 2026.9 + rng.uniform(0, 0.01, n)
    ft = FrameTransform("ITRF2014", "CGCS2000")
    exact = ft(lon, lat, h, t)
    fast = ft.by_cells(lon, lat, h, t)
    d = GEOD.inv(exact[0], exact[1], fast[0], fast[1])[2]
    assert d.max() < 3e-4 and np.abs(exact[2] - fast[2]).max() < 3e-4
    assert np.abs(fast[0] - lon).max() > 5e-6  # it did move them (~0.8 m)


def test_decimal_year():
    assert frames.decimal_year(1798761600.0) == 2027.0  # 2027-01-01T00:00:00Z
    assert abs(frames.decimal_year(1782864000.0) - (2026 + 181 / 365)) < 1e-9  # 2026-07-01T00:00:00Z
