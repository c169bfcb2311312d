"""mapsvc CLI: ``vrs`` — virtual RINEX (network RTK) from reference stations of known coordinates.

Wiring only: the engine is cors.network (baselines, corrections, interpolation, virtual obs).
"""
from __future__ import annotations

import datetime as dt
import json

import click

from cors.errors import CorsError


def _base(spec: str):
    obs, sep, xyz = spec.rpartition("@")
    if not sep or not obs:
        raise CorsError(f"--base {spec!r}: expected OBS@X,Y,Z (marker ECEF, m)")
    try:
        ecef = [float(v) for v in xyz.split(",")]
    except ValueError:
        raise CorsError(f"--base {spec!r}: X,Y,Z must be numbers") from None
    if len(ecef) != 3:
        raise CorsError(f"--base {spec!r}: X,Y,Z needs three numbers")
    return obs, ecef


def _at(spec: str):
    try:
        lat, lon, h = (float(v) for v in spec.split(","))
    except ValueError:
        raise CorsError(f"--at {spec!r}: expected LAT,LON,H (degrees, degrees, m ellipsoidal)") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 360 and -1000 < h < 20000):
        raise CorsError(f"--at {spec!r}: latitude, longitude or height out of range")
    return lat, lon, h


def _gpst(spec: str | None, opt: str) -> float | None:
    """GPST calendar time -> RTKLIB gtime seconds (same scale as time_t)."""
    if not spec:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M"):
        try:
            return dt.datetime.strptime(spec, fmt).replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            continue
    raise CorsError(f"{opt} {spec!r}: expected YYYY-MM-DDTHH:MM:SS (GPST)")


@click.command("vrs")
@click.option("--base", "bases", multiple=True, required=True,
              help="Station RINEX observations and its known marker ECEF: OBS@X,Y,Z (repeat).")
@click.option("--nav", "navs", multiple=True, required=True, help="Broadcast navigation RINEX (repeat).")
@click.option("--at", "at", required=True, help="Virtual station LAT,LON,H (deg, deg, m ellipsoidal).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="RINEX 3 output.")
@click.option("--from", "t_from", default=None, help="First epoch, GPST (YYYY-MM-DDTHH:MM:SS).")
@click.option("--to", "t_to", default=None, help="Last epoch, GPST.")
@click.option("--atx", default=None, type=click.Path(dir_okay=False),
              help="ANTEX file for the stations' antenna phase centres (recommended).")
@click.option("--interpolation", default="plane", show_default=True,
              help="plane | surface | idw (plane falls back to idw far outside the network).")
@click.option("--corrections", default="iono,tropo", show_default=True,
              help="iono,tropo | iono | tropo | none (geometry only).")
@click.option("--rtcm", "rtcm_out", default=None, type=click.Path(dir_okay=False),
              help="Also write the virtual station as RTCM 3 (MSM7 + 1006 at the virtual position).")
def vrs(bases, navs, at, out, t_from, t_to, atx, interpolation, corrections, rtcm_out) -> None:
    """Virtual reference station observations at --at, from a network of stations."""
    from cors.network import interpolate
    from cors.network.engine import NetworkEngine
    from cors.network.postprocess import virtual_rinex
    from cors.network.sites import llh_to_ecef, load_site

    if interpolation not in interpolate.METHODS:
        raise CorsError(f"--interpolation {interpolation!r}: one of {', '.join(sorted(interpolate.METHODS))}")
    comps = () if corrections.strip() == "none" else tuple(c.strip() for c in corrections.split(",") if c.strip())
    if set(comps) - {"iono", "tropo"}:
        raise CorsError(f"--corrections {corrections!r}: iono, tropo, both, or none")
    position = llh_to_ecef(*_at(at))
    start, end = _gpst(t_from, "--from"), _gpst(t_to, "--to")
    if start is not None and end is not None and end < start:
        raise CorsError("--to is before --from")
    sites = [load_site(obs, ecef, nav=navs, atx=atx) for obs, ecef in map(_base, bases)]
    engine = NetworkEngine(sites, sites[0].source.nav)
    try:
        summary = virtual_rinex(engine, position, out, start=start, end=end, method=interpolation,
                                components=comps)
    finally:
        engine.close()
    if rtcm_out:
        from cors.network.rtcm import rinex_to_rtcm

        summary["rtcm_bytes"] = rinex_to_rtcm(out, navs, rtcm_out, position)
    summary.pop("timing", None)
    click.echo(json.dumps({"out": out, **summary}))


commands = [vrs]
