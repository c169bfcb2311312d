"""mapsvc CLI: check (quality and compliance of a map or a release, with the reports surveyors sign)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from mapsvc.commands.maps import origin_option
from standards.report import LANGS


@click.command("check")
@click.argument("map_path", metavar="MAP.osm", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--release", help="Check a published release (compliance too); stores report.json with it.")
@click.option("--report", "report_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for report.json, report.html and report.pdf.")
@click.option("--reference", type=click.Path(dir_okay=False, path_type=Path),
              help="Reference map for completeness (missing / extra lanelets).")
@click.option("--checkpoints", type=click.Path(dir_okay=False, path_type=Path),
              help="Check points: CSV (lon,lat or x,y [,point_id]) or any GDAL point layer.")
@click.option("--metadata", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML: review_no, review_expiry, qualification_no, producer, offset_provider "
                   "(default: $MAPSVC_HOME/metadata.yaml if present).")
@click.option("--lang", type=click.Choice(LANGS), default="en", show_default=True)
@click.option("--public", is_flag=True, help="Generalise positions to 50 m (always on for --release).")
@origin_option
def check(map_path, release, report_dir, reference, checkpoints, metadata, lang, public, origin):
    """Check MAP.osm or a release against the quality standard and the mapping rules.

    Writes REPORT/report.json, report.html and report.pdf; exits 1 when the result is a fail."""
    from lanelets.files import write_atomic
    from standards import StandardsError, check_map, check_release
    from standards.report import render
    from standards.runner import load_metadata

    if bool(map_path) == bool(release):
        raise StandardsError("give exactly one of MAP.osm or --release NAME")
    from mapsvc.config import home

    if metadata is None and (home() / "metadata.yaml").exists():
        metadata = home() / "metadata.yaml"
    md = load_metadata(metadata) if metadata else None
    if release:
        from mapsvc.commands.maps import store_url
        from tiles import open_store

        store = open_store(store_url())
        report = check_release(store, release, home(), reference=reference, checkpoints=checkpoints, metadata=md)
    else:
        report = check_map(map_path, origin=origin, reference=reference, checkpoints=checkpoints, metadata=md,
                           public=public)
    outputs = {fmt: render(report, fmt, lang) for fmt in ("json", "html", "pdf")}
    for fmt, data in outputs.items():
        write_atomic(Path(report_dir) / f"report.{fmt}", data)
    if release:
        from mapsvc.reports import store_report

        # JSON, HTML and PDF in every language, rendered now so that serving one is a read
        added = store_report(store, release, outputs["json"], {(f, lang): outputs[f] for f in ("html", "pdf")})
        if not added["report.json"]:  # reports are immutable once stored, like the release
            click.echo(f"mapsvc: note: release {release!r} already has a report; the stored report was kept",
                       err=True)
    v = report["verdict"]
    n = sum(1 for f in report["findings"] if f["severity"] != "info")
    click.echo(f"{v['result'].upper()}: score {v['score']}, grade {v['grade']}, {n} findings "
               f"(+{len(report['findings']) - n} information) -> {report_dir}")
    if v["result"] != "pass":
        sys.exit(1)


commands = [check]
