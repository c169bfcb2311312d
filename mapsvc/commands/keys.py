"""mapsvc CLI: ``keys create|list|export``, the Ed25519 keys that sign release manifests (tiles.signing)."""
from __future__ import annotations

import json

import click

from mapsvc.config import home


@click.group("keys")
def keys_cmd():
    """Ed25519 keys that sign release manifests (private keys stay under $MAPSVC_HOME/keys, mode 0600)."""


@keys_cmd.command("create")
@click.option("--no-activate", is_flag=True, help="Keep signing new releases with the current key.")
def keys_create(no_activate):
    """Create a key pair; new releases are signed with it. Prints the key id and public key."""
    from tiles.signing import create_key

    key = create_key(home(), activate=not no_activate)
    click.echo(f"key id:     {key.key_id}")
    click.echo(f"public key: {key.as_dict()['public_key']}")
    click.echo(key.pem, nl=False)


@keys_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json):
    """List key ids and public keys (never private keys)."""
    from tiles.signing import list_keys

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
    from tiles.signing import SignatureError, active_key_id, public_key

    kid = key_id or active_key_id(home())
    if kid is None:
        raise SignatureError("no signing key yet; run `mapsvc keys create`")
    click.echo(public_key(home(), kid).pem, nl=False)


commands = [keys_cmd]
