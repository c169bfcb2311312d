"""``mapsvc locate``: the lanelet under the vehicle, one JSON line per position."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mapsvc.config import home

FRAME_CHOICES = ["CGCS2000", "ITRF2014", "ITRF2020", "WGS84"]


def read_positions(lat, lon, height, pos, nmea):
    """(Positions, source) from exactly one of --lat/--lon, --pos, --nmea."""
    import numpy as np

    from cors.solutions import Positions, read_gga, read_pos

    given = [name for name, v in (("--lat/--lon", lat is not None or lon is not None), ("--pos", pos),
                                  ("--nmea", nmea)) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --lat/--lon, --pos FILE, --nmea FILE")
    if pos:
        return read_pos(pos)
    if nmea:
        return read_gga(nmea)
    if lat is None or lon is None:
        raise click.UsageError("--lat and --lon go together")
    return Positions(np.array([lat]), np.array([lon]), np.array([height or 0.0]))


def write_rows(located, times, out=None) -> None:
    out = out or sys.stdout
    write = out.write
    dumps = json.dumps
    for i, t in enumerate(times):
        write(dumps({"time": t, **located.row(i)}) + "\n")


@click.command("locate")
@click.option("--cache", "cache", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Vehicle cache filled by `mapsvc fetch` (verified tiles and manifest).")
@click.option("--lat", type=click.FloatRange(-90, 90), default=None)
@click.option("--lon", type=click.FloatRange(-180, 180), default=None)
@click.option("--height", type=float, default=None, help="Ellipsoidal height (m) of --lat/--lon.")
@click.option("--pos", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="RTKLIB solution file (llh or xyz), as `mapsvc rover` and rnx2rtkp write them.")
@click.option("--nmea", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="NMEA 0183 log: every GGA sentence with a fix.")
@click.option("--frame", type=click.Choice(FRAME_CHOICES, case_sensitive=False), default="CGCS2000",
              show_default=True, help="Reference frame of the positions.")
@click.option("--epoch", type=float, default=None,
              help="Epoch (decimal year) of the positions in a dynamic frame (default: the file's times, else now).")
def locate_cmd(cache, lat, lon, height, pos, nmea, frame, epoch):
    """Locate positions on the cached release: into its frame, through its offset, matched with lanelet2.
    One JSON object per position: time, lanelet, lateral_m, along_m, heading_deg, candidates."""
    from lanelets.frames import decimal_year, parse
    from mapsvc.client import VehicleClient

    positions = read_positions(lat, lon, height, pos, nmea)
    f, _ = parse(frame)
    epochs = epoch
    if epochs is None and f.dynamic:
        epochs = positions.epochs()
        if epochs is None:
            epochs = decimal_year()
    client = VehicleClient.from_cache(cache)
    client.home = home()
    located = client.locate(positions.lat, positions.lon, positions.height, frame=f.name, epoch=epochs,
                            track=len(positions) > 1 and positions.time is not None)
    write_rows(located, positions.time_strings())


def epoch_locator(cache: Path, frame: str, epoch: float | None):
    """For `mapsvc rover --map CACHE`: a function EpochStatus -> " lanelet=... lateral=..." (the rover's
    ECEF position is in the frame of the base coordinates, i.e. the caster's service frame)."""
    from lanelets.frames import decimal_year, parse
    from cors.geodesy import ecef_to_geodetic
    from mapsvc.client import VehicleClient

    client = VehicleClient.from_cache(cache)
    client.home = home()
    f, fixed = parse(frame, epoch)
    client.map_frame()  # verified once, before the first epoch: a bad cache fails here, not mid-drive

    def describe(status) -> str:
        if not status.stat:
            return ""
        lat, lon, h = ecef_to_geodetic(*status.ecef)
        t = fixed if fixed is not None else decimal_year(status.gpst)
        row = client.locate(lat, lon, h, frame=f.name, epoch=t).row(0)
        if row["lanelet"] is None:
            return "  lanelet=none"
        return f"  lanelet={row['lanelet']} lateral={row['lateral_m']:+.2f}m along={row['along_m']:.1f}m"
    return describe


commands = [locate_cmd]
