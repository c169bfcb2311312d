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
@click.option("--raster", "layers", multiple=True, metavar="LAYER",
              help="Also fetch and verify this raster layer of each tile (repeatable).")
def fetch_cmd(server, token, lat, lon, radius_m, cache, release, pubkey, key_id, match, layers):
    """Download and verify the tiles within RADIUS-M of LAT,LON into CACHE (only what changed on later calls)."""
    from mapsvc.client import VehicleClient

    client = VehicleClient(server, token, cache, public_key=pubkey, key_id=key_id)
    result = client.fetch(lat, lon, radius_m, release, layers=layers)
    out = result.as_dict()
    if match:
        out["merged_osm"] = str(client.merged_osm())
        out["lanelets_at_position"] = [{"id": i, "distance_m": d} for i, d in client.match(lat, lon)]
    click.echo(json.dumps(out, indent=1))


commands = [fetch_cmd]
