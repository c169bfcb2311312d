"""The ``mapsvc`` command line: a click group whose sub-commands live in ``mapsvc.commands``.

Each module there exports ``commands`` (a list of click commands); this file only wires them.
Domain errors become a one-line ``mapsvc: error: ...`` and exit status 2.
"""
from __future__ import annotations

import importlib
import sys

import click

COMMAND_MODULES = (
    "mapsvc.commands.maps",
    "mapsvc.commands.cors",
    "mapsvc.commands.service",
    "mapsvc.commands.keys",
    "mapsvc.commands.fetch",
    "mapsvc.commands.check",
    "mapsvc.commands.vrs",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mapsvc")
def cli() -> None:
    """HD-map tiles, releases and RTK corrections for pilot zones."""


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(_name).commands:
        cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> None:
    from mapsvc.errors import USER_ERRORS

    try:
        cli.main(args=argv, prog_name="mapsvc", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("mapsvc: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except USER_ERRORS as exc:
        click.echo(f"mapsvc: error: {exc}", err=True)
        sys.exit(2)
