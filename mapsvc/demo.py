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
    from tiles.store import desensitisation_of

    work = home() / "demo"
    work.mkdir(parents=True, exist_ok=True)
    osm = work / "yizhuang_pilot.osm"
    click.echo(f"1/5 building the illustrative Yizhuang pilot-zone map -> {osm}")
    summary = build(roadspec_path(), osm)
    click.echo("    " + json.dumps({k: v for k, v in summary.items() if isinstance(v, (int, float, str))}))
    click.echo(f"2/5 tiling at NDS level {level} -> {work / 'tiles'}")
    manifest = tile_to_dir(osm, work / "tiles", level)
    click.echo(f"    {len(manifest['tiles'])} tiles, {sum(t['bytes'] for t in manifest['tiles'])} bytes")
    store_dir = home() / "store"
    name = next_release_name(open_store(store_dir))
    click.echo(f"3/5 desensitising and publishing release {name} -> {store_dir}")
    published = publish(osm, name, store_dir, level)
    d = desensitisation_of(published)
    click.echo(f"    offset {d['offset']['name']} (certified: {'yes' if d['certified'] else 'no'}), "
               f"profile {d['profile']}, manifest signed")
    return {"map": str(osm), "tiles": len(manifest["tiles"]), "release": name}


def run_report_demo(release: str) -> dict:
    """The surveyors' report of the release (JSON, HTML, PDF), stored with it as `mapsvc check` does."""
    from lanelets.files import write_atomic
    from standards import check_release
    from standards.report import render
    from tiles import open_store

    out = home() / "demo" / "report"
    click.echo(f"4/5 checking release {release} against the quality standard and mapping rules -> {out}")
    store = open_store(home() / "store")
    report = check_release(store, release, home())
    outputs = {fmt: render(report, fmt, "zh" if fmt == "pdf" else "en") for fmt in ("json", "html", "pdf")}
    for fmt, data in outputs.items():
        write_atomic(out / f"report.{fmt}", data)
    from mapsvc.reports import store_report

    store_report(store, release, outputs["json"], {("html", "en"): outputs["html"], ("pdf", "zh"): outputs["pdf"]})
    v = report["verdict"]
    click.echo(f"    {v['result']}: score {v['score']}, grade {v['grade']} (an illustrative map has no map-review "
               f"number, so the report cannot pass; see report.html)")
    return {"result": v["result"], "score": v["score"], "report": str(out)}


def run_demo(serve: bool = False) -> dict:
    from cors.demo import run_rtk_demo

    result = {"maps": run_map_demo()}
    result["report"] = run_report_demo(result["maps"]["release"])
    click.echo("5/5 RTK: a real GEONET base station replayed through the NTRIP caster to a rover")
    rtk = run_rtk_demo(home(), speed=20.0)
    result["rtk"] = {k: v for k, v in rtk.items() if k in ("summary", "epochs", "fix_rate", "seconds")}
    click.echo("done: " + json.dumps(result, default=str))
    click.echo("web console: http://127.0.0.1:8080/  (while `mapsvc serve` runs; sign in with a token from "
               "`.venv/bin/mapsvc tokens create --role surveyor`)")
    if serve:
        click.echo("starting the service (Ctrl-C stops it): mapsvc serve")
        from click import get_current_context

        from mapsvc.commands.service import serve as serve_cmd

        get_current_context().invoke(serve_cmd)
    else:
        click.echo("start the service with: .venv/bin/mapsvc serve   (HTTP on 127.0.0.1:8080, NTRIP on 2101)")
    return result
