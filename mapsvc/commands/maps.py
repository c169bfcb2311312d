"""mapsvc CLI: build, tile, publish, releases, export, demo."""
from __future__ import annotations

import json
from pathlib import Path

import click

from desensitize.profile import PROFILES
from mapsvc.config import home


def parse_origin(ctx, param, value):
    if value is None:
        return None
    try:
        lat, lon = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected LAT,LON, e.g. 39.79,116.50") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise click.BadParameter("LAT,LON outside WGS-84 ranges")
    return (lat, lon)


origin_option = click.option("--origin", callback=parse_origin, metavar="LAT,LON",
                             help="Origin for maps whose points have only local_x/local_y.")
frame_option = click.option("--frame", default=None, metavar="FRAME[@EPOCH]",
                             help="Reference frame of the source coordinates: CGCS2000 (default), or e.g. "
                                  "ITRF2014@2026.9, ITRF2020@2024.0, WGS84@2026.9.")
level_option = click.option("--level", type=click.IntRange(0, 15), default=13, show_default=True,
                            help="NDS.Live tile level (13 is about 2.4 km x 1.9 km at Beijing).")


from mapsvc.config import store_url  # noqa: E402  (the one place the store is chosen)


@click.command("build")
@click.argument("input", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .osm")
@origin_option
@frame_option
def build_cmd(input, out, origin, frame):
    """Build a Lanelet2 map from INPUT (.osm, .gpkg, .geojson); a source in another --frame is brought into
    CGCS2000, the frame of maps in China."""
    from lanelets import build

    summary = build(input, out, origin, frame=frame)
    click.echo(json.dumps(summary, indent=1, ensure_ascii=False))


@click.command("tile")
@click.argument("map_path", metavar="MAP.osm", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory")
@level_option
@origin_option
def tile_cmd(map_path, out, level, origin):
    """Cut MAP.osm into self-contained tiles: OUT/manifest.json and OUT/tiles/*.osm.gz."""
    from mapsvc.pipeline import tile_to_dir

    manifest = tile_to_dir(map_path, out, level, origin)
    total = sum(t["bytes"] for t in manifest["tiles"])
    click.echo(f"{len(manifest['tiles'])} tiles at level {level}, {total} bytes -> {out}")


@click.command("publish")
@click.argument("map_path", metavar="MAP.osm", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--release", required=True, help="Release name (immutable).")
@level_option
@origin_option
@click.option("--restricted-areas", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Polygon layer GDAL reads (GeoPackage, GeoJSON): everything intersecting it is removed.")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default=None,
              help="Desensitisation profile (default from $MAPSVC_HOME/desensitize.yaml, else pilot-test).")
@click.option("--offset-provider", default=None, metavar="NAME",
              help="Offset provider registered under mapsvc.offset_providers (gcj02, vendor, ...).")
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Desensitisation rules YAML (default: the shipped rule set).")
@click.option("--raster", "rasters", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Raster layer (named after the file): desensitised, stored per tile as COGs (repeatable).")
@frame_option
def publish_cmd(map_path, release, level, origin, restricted_areas, profile, offset_provider, rules, rasters, frame):
    """Desensitise MAP.osm, tile it and store it as an immutable release."""
    from mapsvc.pipeline import publish
    from tiles.store import desensitisation_of

    manifest = publish(map_path, release, store_url(), level, origin, restricted_areas=restricted_areas,
                       profile=profile, offset_provider=offset_provider, rules=rules, rasters=rasters,
                       frame=frame)
    d = desensitisation_of(manifest)
    click.echo(f"published {release}: {len(manifest['tiles'])} tiles at level {level}; "
               f"offset {d['offset']['name']} (certified: {'yes' if d['certified'] else 'no'}), profile {d['profile']}; "
               f"frame {manifest['frame']['horizontal']}@{manifest['frame']['epoch']}")
    if d.get("notice"):
        click.echo(f"notice: {d['notice']}")


@click.group("releases")
def releases_cmd():
    """List, show and compare releases."""


@releases_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
def releases_list(as_json):
    from tiles import open_store

    rel = open_store(store_url()).releases()
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rel], indent=1))
        return
    for r in rel:
        click.echo(f"{r.name}\t{r.created}\tlevel {r.level}\t{r.tiles} tiles\t{r.bytes} bytes")


@releases_cmd.command("show")
@click.argument("name")
def releases_show(name):
    from tiles import open_store

    click.echo(json.dumps(open_store(store_url()).manifest(name), indent=1, ensure_ascii=False))


@releases_cmd.command("diff")
@click.argument("a")
@click.argument("b")
def releases_diff(a, b):
    from tiles import open_store

    click.echo(json.dumps(open_store(store_url()).diff(a, b), indent=1))


@click.command("export")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def export_cmd(name, out):
    """Write release NAME to OUT in the layout of `mapsvc tile`."""
    from tiles import open_store

    manifest = open_store(store_url()).export(name, out)
    click.echo(f"exported {name}: {len(manifest['tiles'])} tiles -> {out}")


@click.command("demo")
@click.option("--serve/--no-serve", default=None,
              help="Start `mapsvc serve` at the end (default: only when run on a terminal).")
def demo_cmd(serve):
    """Build the pilot-zone map, tile and publish it, show RTK fixes, then serve."""
    import sys

    from mapsvc.demo import run_demo

    run_demo(serve=sys.stdin.isatty() and sys.stdout.isatty() if serve is None else serve)


commands = [build_cmd, tile_cmd, publish_cmd, releases_cmd, export_cmd, demo_cmd]
