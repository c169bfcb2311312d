"""`mapsvc build --frame` brings a source in another frame into CGCS2000; `mapsvc publish --frame` declares the
release's frame in the signed manifest. On the bundled pilot-zone road spec (no ../shared needed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from pyproj import Geod, Transformer

from lanelets.osm import read_osm

REPO = Path(__file__).resolve().parents[1]
GEOD = Geod(ellps="GRS80")


def _mapsvc(home: Path, *args):
    return subprocess.run([sys.executable, "-m", "mapsvc", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env={**os.environ, "MAPSVC_HOME": str(home)})


def test_build_and_publish_with_a_frame(tmp_path):
    from mapsvc.demo import roadspec_path

    home = tmp_path / "home"
    r = _mapsvc(home, "build", roadspec_path(), "-o", tmp_path / "cgcs.osm")
    assert r.returncode == 0, r.stderr
    r = _mapsvc(home, "build", roadspec_path(), "-o", tmp_path / "itrf.osm", "--frame", "ITRF2014@2026.9")
    assert r.returncode == 0, r.stderr
    a, b = read_osm(tmp_path / "cgcs.osm"), read_osm(tmp_path / "itrf.osm")
    assert np.array_equal(a.node_id, b.node_id) and len(a.way_xml) == len(b.way_xml)
    # the survey is read as ITRF2014@2026.9: its CGCS2000 positions are the same numbers moved back by the
    # plate motion and the Helmert (here by PROJ's own ITRF2014 -> ITRF2008 -> ITRF97 lines)
    tr = Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step +proj=cart +ellps=GRS80 "
        "+step +inv +proj=helmert +init=ITRF2014:EURA +t_epoch=2000.0 +step +proj=set +v_4=2000.0 "
        "+step +proj=helmert +init=ITRF2014:ITRF2008 +step +proj=helmert +init=ITRF2008:ITRF97 "
        "+step +inv +proj=cart +ellps=GRS80 +step +proj=unitconvert +xy_in=rad +xy_out=deg")
    want_lon, want_lat, _, _ = tr.transform(a.node_lon, a.node_lat, np.zeros(len(a.node_lon)),
                                            np.full(len(a.node_lon), 2026.9))
    d = GEOD.inv(b.node_lon, b.node_lat, want_lon, want_lat)[2]
    assert d.max() < 0.005
    assert np.median(GEOD.inv(a.node_lon, a.node_lat, b.node_lon, b.node_lat)[2]) > 0.7

    r = _mapsvc(home, "publish", tmp_path / "cgcs.osm", "--release", "p1", "--frame", "ITRF2014@2026.9")
    assert r.returncode == 0, r.stderr
    assert "frame ITRF2014@2026.9" in r.stdout
    from tiles import open_store

    frame = open_store(home / "store").manifest("p1")["frame"]
    assert frame["horizontal"] == "ITRF2014" and frame["epoch"] == 2026.9 and frame["vertical"] == "ellipsoidal"
    assert frame["offset"]["name"] == "gcj02" and frame["offset"]["certified"] is False
    r = _mapsvc(home, "publish", tmp_path / "cgcs.osm", "--release", "p2", "--frame", "ITRF2014")
    assert r.returncode == 2 and "dynamic" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _mapsvc(home, "build", roadspec_path(), "-o", tmp_path / "x.osm", "--frame", "NAD83")
    assert r.returncode == 2 and "unknown frame" in r.stderr and not (tmp_path / "x.osm").exists()
