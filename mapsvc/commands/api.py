"""mapsvc CLI: ``keys create|list`` (manifest-signing keys) and ``fetch`` (the vehicle client)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mapsvc.config import home


def _fail(exc: Exception):
    click.echo(f"mapsvc: error: {exc}", err=True)
    sys.exit(2)


@click.group("keys")
def keys_cmd():
    """Ed25519 keys that sign release manifests (private keys stay under $MAPSVC_HOME/keys, mode 0600)."""


@keys_cmd.command("create")
@click.option("--no-activate", is_flag=True, help="Keep signing new releases with the current key.")
def keys_create(no_activate):
    """Create a key pair; new releases are signed with it. Prints the key id and public key."""
    from mapsvc.signing import create_key

    key = create_key(home(), activate=not no_activate)
    click.echo(f"key id:     {key.key_id}")
    click.echo(f"public key: {key.as_dict()['public_key']}")
    click.echo(key.pem, nl=False)


@keys_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json):
    """List key ids and public keys (never private keys)."""
    from mapsvc.signing import list_keys

    keys = [k.as_dict() for k in list_keys(home())]
    if as_json:
        click.echo(json.dumps(keys, indent=1))
        return
    for k in keys:
        click.echo(f"{k['key_id']}\t{k['created']}\t{'active' if k['active'] else '-'}\t{k['public_key']}")


@keys_cmd.command("export")
@click.argument("key_id", required=False)
def keys_export(key_id):
    """Print a public key (default: the active one) as PEM, to pin in vehicles (--pubkey FILE)."""
    from mapsvc.signing import SignatureError, active_key_id, public_key

    try:
        kid = key_id or active_key_id(home())
        if kid is None:
            raise SignatureError("no signing key yet; run `mapsvc keys create`")
        click.echo(public_key(home(), kid).pem, nl=False)
    except SignatureError as exc:
        _fail(exc)


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
    """Download and verify the tiles within RADIUS-M of LAT,LON into CACHE (only what changed on later calls)."""
    from mapsvc.client import FetchError, VehicleClient
    from mapsvc.signing import SignatureError

    from lanelets.frames import FrameError, decimal_year, parse

    client = VehicleClient(server, token, cache, public_key=pubkey, key_id=key_id)
    client.home = home()
    try:
        if epoch is None and parse(frame)[0].dynamic:
            epoch = decimal_year()
        result = client.fetch(lat, lon, radius_m, release, layers=layers, frame=frame, epoch=epoch)
        out = result.as_dict()
        if match:
            out["merged_osm"] = str(client.merged_osm())
            mlon, mlat = client.map_frame().to_map([lon], [lat], frame=frame, epoch=epoch)
            out["lanelets_at_position"] = [{"id": i, "distance_m": d}
                                           for i, d in client.match(float(mlat[0]), float(mlon[0]))]
    except (FetchError, SignatureError, FrameError) as exc:
        _fail(exc)
    click.echo(json.dumps(out, indent=1))


commands = [keys_cmd, fetch_cmd]
