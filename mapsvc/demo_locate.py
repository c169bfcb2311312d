"""`make demo`, last step: the vehicle on the map, the whole loop.

1. A route through the pilot-zone map from lanelet2 routing (vehicle traffic rules).
2. Positions along it at 10 Hz, given in ITRF2014 at today's epoch as an RTK receiver on modern CORS reports
   them, with the scatter of the real RTK solution the demo just computed (residuals of its fixes about a
   smooth track, resampled).
3. The vehicle fetches the published release over HTTP (the server only ever sees the offset position),
   locates every position (ITRF2014 -> CGCS2000 -> the manifest's offset -> lanelet2 matching), and the demo
   prints the lanelet sequence and how much of it was right; beside it, the same positions wrongly taken
   as CGCS2000 (the 0.77 m gap this closes).
"""
from __future__ import annotations

import shutil

import threading
from pathlib import Path

import click
import numpy as np

from mapsvc.config import home, open_tokens

HZ = 10.0
SPEED_M_S = 10.0


def rtk_scatter(statuses) -> np.ndarray:
    """(n, 3) east/north/up residuals (m) of the solved epochs about a smooth track: a local quadratic over
    7 epochs (Savitzky-Golay weights from a least-squares fit) removes the car's own motion."""
    from cors.geodesy import ecef_to_geodetic

    ecef = np.array([s.ecef for s in statuses if s.stat], dtype=np.float64)
    if len(ecef) < 9:
        return np.zeros((1, 3))
    lat, lon, _ = ecef_to_geodetic(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    lam, phi = np.radians(lon[0]), np.radians(lat[0])
    rot = np.array([[-np.sin(lam), np.cos(lam), 0.0],
                    [-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)],
                    [np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)]])
    enu = (ecef - ecef[0]) @ rot.T
    offsets = np.arange(-3, 4)
    weights = np.linalg.pinv(np.vander(offsets, 3, increasing=True))[0]  # value of the fit at the centre
    smooth = np.stack([np.convolve(enu[:, k], weights[::-1], mode="valid") for k in range(3)], axis=1)
    return enu[3:-3] - smooth


def pilot_route(osm: Path):
    """(lanelet2 map, origin, [lanelet ids]) of the longest of a few shortest routes through the map."""
    import lanelet2
    from lanelet2.routing import RoutingGraph
    from lanelet2.traffic_rules import Locations, Participants, create

    from lanelets.model import default_origin, load_lanelet2
    from lanelets.osm import read_osm

    m = read_osm(osm)
    origin = default_origin(m)
    lmap, _, _ = load_lanelet2(m, origin)
    rules = create(Locations.Germany, Participants.Vehicle)
    graph = RoutingGraph(lmap, rules)
    lls = sorted((ll for ll in lmap.laneletLayer if rules.canPass(ll)), key=lambda ll: ll.id)
    centre = {ll.id: np.mean([(p.x, p.y) for p in ll.centerline], axis=0) for ll in lls}
    best: list = []
    for start in lls[:: max(1, len(lls) // 12)]:
        far = sorted(lls, key=lambda ll: -np.hypot(*(centre[ll.id] - centre[start.id])))
        for goal in far[:5]:
            route = graph.getRoute(start, goal)
            if route is None:
                continue
            path = list(route.shortestPath())
            if sum(lanelet2.geometry.length2d(ll) for ll in path) > \
                    sum(lanelet2.geometry.length2d(ll) for ll in best):
                best = path
            break
    return lmap, origin, best


def route_positions(path, scatter: np.ndarray, seed: int = 20261201):
    """Positions along the route's centre lines every SPEED/HZ metres (local x, y, true lanelet id), each
    moved by a resampled RTK residual."""
    step = SPEED_M_S / HZ
    xs, ys, ids = [], [], []
    carry = 0.0
    for ll in path:
        c = np.array([(p.x, p.y) for p in ll.centerline])
        cum = np.r_[0.0, np.cumsum(np.hypot(*np.diff(c, axis=0).T))]
        s = np.arange(carry, cum[-1], step)
        carry = (s[-1] + step - cum[-1]) if len(s) else carry - cum[-1]
        xs.append(np.interp(s, cum, c[:, 0]))
        ys.append(np.interp(s, cum, c[:, 1]))
        ids.append(np.full(len(s), ll.id, dtype=np.int64))
    x, y, truth = np.concatenate(xs), np.concatenate(ys), np.concatenate(ids)
    pick = np.random.default_rng(seed).integers(0, len(scatter), len(x))
    return x + scatter[pick, 0], y + scatter[pick, 1], scatter[pick, 2], truth


def _runs(ids: np.ndarray) -> list[tuple[int | None, int]]:
    out: list[tuple[int | None, int]] = []
    for i in ids.tolist():
        i = None if i < 0 else i
        if out and out[-1][0] == i:
            out[-1] = (i, out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out


def run_locate_demo(release: str, statuses, step: str = "6/6") -> dict:
    from werkzeug.serving import make_server

    from lanelets.frames import FrameTransform, decimal_year
    from lanelets.projection import local_to_lonlat
    from tiles import signing
    from mapsvc.api import create_app
    from mapsvc.client import VehicleClient

    osm = home() / "demo" / "yizhuang_pilot.osm"
    click.echo(f"{step} the vehicle on the map: a lanelet2 route, RTK positions in ITRF2014 at today's epoch, "
               f"located on release {release}")
    _, origin, path = pilot_route(osm)
    scatter = rtk_scatter(statuses or [])
    x, y, dh, truth = route_positions(path, scatter)
    lon, lat = local_to_lonlat(x, y, *origin)
    epoch = round(decimal_year(), 3)
    ilon, ilat, ih = FrameTransform("CGCS2000", "ITRF2014", epoch)(lon, lat, 40.0 + dh)
    horiz = np.hypot(scatter[:, 0], scatter[:, 1])
    click.echo(f"    route: {len(path)} lanelets, {len(x) / HZ * SPEED_M_S:.0f} m, {len(x)} positions at "
               f"{HZ:g} Hz; RTK scatter from the demo's {len(scatter)} solved epochs: horizontal RMS "
               f"{np.sqrt(np.mean(horiz ** 2)) * 100:.1f} cm, max {horiz.max() * 100:.1f} cm")

    tokens = open_tokens()
    token = tokens.create("vehicle", f"demo-vehicle-{release}")
    tokens.close()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the demo prints what matters itself
    app = create_app({"HOME": str(home()), "ACCESS_LOG": False})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # the demo's own vehicle, new each run: a cache is bound to one server, and this one's port is new
        cache = home() / "demo" / "vehicle"
        shutil.rmtree(cache, ignore_errors=True)
        client = VehicleClient(f"http://127.0.0.1:{server.server_port}", token, cache,
                               key_id=signing.active_key_id(home()))
        client.home = home()
        mid = len(x) // 2
        radius = float(np.hypot(x - x[mid], y - y[mid]).max()) + 200.0
        got = client.fetch(float(ilat[mid]), float(ilon[mid]), radius, release, frame="ITRF2014", epoch=epoch)
        sent = client.state()["area"]
        click.echo(f"    fetched {len(got.tiles)} tiles; the tile service saw only the offset position "
                   f"{sent['lat']:.6f}, {sent['lon']:.6f}")
        located = client.locate(ilat, ilon, ih, frame="ITRF2014", epoch=epoch, track=True)
        wrong_frame = client.locate(ilat, ilon, ih, frame="CGCS2000", track=True)
    finally:
        server.shutdown()
        thread.join(5)
    right = float((located.lanelet == truth).mean())
    right_wrong = float((wrong_frame.lanelet == truth).mean())
    err = np.abs(located.lateral_m - wrong_frame.lateral_m)
    click.echo("    route lanelets:   " + " ".join(str(ll.id) for ll in path))
    click.echo("    located sequence: " + " ".join(f"{i if i is not None else 'none'}x{n}"
                                                   for i, n in _runs(located.lanelet)))
    click.echo(f"    right lanelet: {right:.1%} of {len(x)} positions "
               f"(the same positions taken as CGCS2000, without the frame chain: {right_wrong:.1%}, "
               f"lateral off by {np.nanmedian(err):.2f} m)")
    return {"route_lanelets": len(path), "positions": int(len(x)), "right": round(right, 4),
            "right_without_frame_chain": round(right_wrong, 4), "epoch": epoch}
