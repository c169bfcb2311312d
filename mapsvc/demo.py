"""`make demo`: the main job on the embedded default (SQLite + files under $MAPSVC_HOME).

Builds the bundled illustrative Yizhuang pilot-zone road-spec into a Lanelet2 map, tiles it, publishes a
release, shows RTK fixes from a real GEONET base replayed through the NTRIP caster (when the RTK part is
installed), then starts the service on a terminal (or prints how to).
"""
from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import click

from mapsvc.config import home


def roadspec_path() -> Path:
    return Path(str(importlib.resources.files("lanelets.roadspec") / "yizhuang_pilot.geojson"))


def next_release_name(store, prefix: str = "yizhuang-demo-") -> str:
    taken = {r.name for r in store.releases()}
    n = 1
    while f"{prefix}{n}" in taken:
        n += 1
    return f"{prefix}{n}"


def run_map_demo(level: int = 13) -> dict:
    from lanelets import build
    from mapsvc.pipeline import publish, tile_to_dir
    from tiles import open_store

    work = home() / "demo"
    work.mkdir(parents=True, exist_ok=True)
    osm = work / "yizhuang_pilot.osm"
    click.echo(f"1/3 building the illustrative Yizhuang pilot-zone map -> {osm}")
    summary = build(roadspec_path(), osm)
    click.echo("    " + json.dumps({k: v for k, v in summary.items() if isinstance(v, (int, float, str))}))
    click.echo(f"2/3 tiling at NDS level {level} -> {work / 'tiles'}")
    manifest = tile_to_dir(osm, work / "tiles", level)
    click.echo(f"    {len(manifest['tiles'])} tiles, {sum(t['bytes'] for t in manifest['tiles'])} bytes")
    store_dir = home() / "store"
    name = next_release_name(open_store(store_dir))
    click.echo(f"3/3 publishing release {name} -> {store_dir}")
    publish(osm, name, store_dir, level)
    return {"map": str(osm), "tiles": len(manifest["tiles"]), "release": name}


def run_demo(serve: bool = False) -> dict:
    from cors.demo import run_rtk_demo

    result = {"maps": run_map_demo()}
    click.echo("4/4 RTK: a real GEONET base station replayed through the NTRIP caster to a rover")
    rtk = run_rtk_demo(home(), speed=20.0)
    result["rtk"] = {k: v for k, v in rtk.items() if k in ("summary", "epochs", "fix_rate", "seconds")}
    click.echo("done: " + json.dumps(result, default=str))
    if serve:
        click.echo("starting the service (Ctrl-C stops it): mapsvc serve")
        from click import get_current_context

        from mapsvc.commands.service import serve as serve_cmd

        get_current_context().invoke(serve_cmd)
    else:
        click.echo("start the service with: .venv/bin/mapsvc serve   (HTTP on 127.0.0.1:8080, NTRIP on 2101)")
    return result
