"""`mapsvc rover ... --map CACHE`: the whole loop live. The real GEONET pair shipped in cssrlib is replayed
through our caster; the CLI rover solves RTK epoch by epoch and prints the lanelet under it, its positions
(ITRF2014 at the epoch of observation) brought into the map's CGCS2000 and offset first."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import numpy as np
import pytest

MAPSVC = str(Path(sys.executable).with_name("mapsvc"))


def one_lanelet_osm(path: Path, lat: float, lon: float, width: float = 3.5, length: float = 40.0) -> int:
    """A straight east-going lanelet centred on (lat, lon); returns its id (UTM metres via pyproj)."""
    from lanelets.projection import local_to_lonlat

    xs = np.array([-length / 2, 0.0, length / 2])
    nodes, nid = [], 1
    ways = {}
    for wid, y in ((101, width / 2), (102, -width / 2)):
        refs = []
        lo, la = local_to_lonlat(xs, np.full(3, y), lat, lon)
        for a, b in zip(la.tolist(), lo.tolist()):
            nodes.append(f'<node id="{nid}" lat="{a!r}" lon="{b!r}"/>')
            refs.append(nid)
            nid += 1
        ways[wid] = refs
    xml = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">', *nodes]
    for wid, refs in ways.items():
        xml.append(f'<way id="{wid}">' + "".join(f'<nd ref="{r}"/>' for r in refs)
                   + '<tag k="type" v="line_thin"/><tag k="subtype" v="solid"/></way>')
    xml.append('<relation id="1000"><member type="way" ref="101" role="left"/>'
               '<member type="way" ref="102" role="right"/><tag k="type" v="lanelet"/>'
               '<tag k="subtype" v="road"/><tag k="location" v="urban"/><tag k="one_way" v="yes"/>'
               '<tag k="speed_limit" v="30"/></relation>')
    xml.append("</osm>")
    path.write_text("\n".join(xml))
    return 1000


@pytest.mark.slow
def test_rover_prints_the_lanelet_each_epoch(tmp_path, monkeypatch):
    from cors.demo import GEONET_3034_ECEF, Pair, cssrlib_data, rtk_session
    from lanelets.frames import FrameTransform, decimal_year
    from lanelets.projection import transformer
    from tiles import signing
    from mapsvc.client import VehicleClient
    from mapsvc.pipeline import publish
    from mapsvc.tokens import TokenStore
    from tests.api.conftest import LiveServer

    files = cssrlib_data()
    pair = Pair(files["base"], files["rover"], [files["nav"]], GEONET_3034_ECEF)
    # where the rover is (ITRF2014 as the base coordinate is taken), then that place in CGCS2000
    first = asyncio.run(rtk_session(tmp_path / "rtk1", pair, speed=200.0))
    fixes = np.array([s.ecef for s in first["statuses"] if s.stat == 1])
    assert len(fixes) > 10
    lon, lat, h = transformer("EPSG:4978", "EPSG:4979").transform(*fixes.mean(axis=0))
    t = decimal_year(first["statuses"][0].gpst)
    clon, clat, _ = FrameTransform("ITRF2014", "CGCS2000")([lon], [lat], [h], t)

    home = tmp_path / "home"
    monkeypatch.setenv("MAPSVC_HOME", str(home))
    osm = tmp_path / "road.osm"
    lanelet = one_lanelet_osm(osm, float(clat[0]), float(clon[0]))
    publish(osm, "r1", str(home / "store"), 15)
    tokens = TokenStore(home / "tokens.sqlite")
    token = tokens.create("vehicle", "car")
    tokens.close()
    srv = LiveServer({"HOME": str(home), "RATE_LIMIT": "100000 per minute"})
    try:
        c = VehicleClient(srv.url, token, tmp_path / "cache", key_id=signing.active_key_id(home))
        c.fetch(float(clat[0]), float(clon[0]), 200.0)
    finally:
        srv.close()

    cli: dict = {}

    async def start_cli(port, mount, user, token_):
        cli["proc"] = await asyncio.create_subprocess_exec(
            MAPSVC, "rover", str(pair.rover_obs), "--nav", str(pair.nav[0]),
            "--caster", f"ntrip://{user}:{token_}@127.0.0.1:{port}/{mount}", "--map", str(tmp_path / "cache"),
            "--frame", "ITRF2014", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, MAPSVC_HOME=str(home)))

    async def main():
        await rtk_session(tmp_path / "rtk2", pair, speed=50.0, on_up=start_cli, extra_clients=1)
        out, err = await asyncio.wait_for(cli["proc"].communicate(), 120)
        return out.decode(), err.decode(), cli["proc"].returncode

    out, err, rc = asyncio.run(main())
    assert rc == 0, err
    fix_lines = [ln for ln in out.splitlines() if " fix " in ln and not ln.startswith("rover:")]
    assert len(fix_lines) > 10
    assert all(f"lanelet={lanelet} " in ln for ln in fix_lines), [ln for ln in fix_lines if f"lanelet={lanelet} " not in ln][:3]
    lateral = [float(ln.split("lateral=")[1].split("m")[0]) for ln in fix_lines]
    # centred on the rover in CGCS2000: only the RTK scatter is left (without the frame chain, the
    # cross-track part of 21 years of plate motion would be)
    assert max(abs(v) for v in lateral) < 0.05, lateral[:5]
