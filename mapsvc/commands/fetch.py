"""mapsvc CLI: ``fetch``, the vehicle client (verified tiles around a position into a local cache)."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("fetch")
@click.option("--server", required=True, help="API base URL, e.g. http://127.0.0.1:8080")
@click.option("--token", required=True, envvar="MAPSVC_TOKEN", help="Bearer token (or $MAPSVC_TOKEN).")
@click.option("--lat", required=True, type=click.FloatRange(-90, 90))
@click.option("--lon", required=True, type=click.FloatRange(-180, 180))
@click.option("--radius-m", required=True, type=click.FloatRange(0, 50000))
@click.option("--cache", "cache", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--release", default=None, help="Release name (default: the latest).")
@click.option("--pubkey", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Pinned public key (PEM or base64); kept in the cache for later calls.")
@click.option("--key-id", default=None, help="Pinned key id (the key is fetched and checked against the id).")
@click.option("--match/--no-match", default=False, help="Also load the merged map and list the lanelets at LAT,LON.")
@click.option("--frame", default="CGCS2000", show_default=True, metavar="FRAME",
              help="Frame of LAT/LON: CGCS2000, ITRF2014, ITRF2020 or WGS84 (the server only sees the offset position).")
@click.option("--epoch", type=float, default=None, help="Epoch (decimal year) of LAT/LON in a dynamic frame "
              "(default: now).")
@click.option("--raster", "layers", multiple=True, metavar="LAYER",
              help="Also fetch and verify this raster layer of each tile (repeatable).")
def fetch_cmd(server, token, lat, lon, radius_m, cache, release, pubkey, key_id, match, layers, frame, epoch):
    """Download and verify the tiles within RADIUS-M of LAT,LON into CACHE (only what changed on later calls).
    LAT/LON are the vehicle's true position in --frame; the server is sent only its offset position."""
    from lanelets.frames import decimal_year, parse
    from mapsvc.client import VehicleClient
    from mapsvc.config import home

    client = VehicleClient(server, token, cache, public_key=pubkey, key_id=key_id)
    client.home = home()
    if epoch is None and parse(frame)[0].dynamic:
        epoch = decimal_year()
    result = client.fetch(lat, lon, radius_m, release, layers=layers, frame=frame, epoch=epoch)
    out = result.as_dict()
    if match:
        out["merged_osm"] = str(client.merged_osm())
        mlon, mlat = client.map_frame().to_map([lon], [lat], frame=frame, epoch=epoch)
        out["lanelets_at_position"] = [{"id": i, "distance_m": d}
                                       for i, d in client.match(float(mlat[0]), float(mlon[0]))]
    click.echo(json.dumps(out, indent=1))


commands = [fetch_cmd]
