"""GB/T quality elements (check points, reference map, metadata), grading, reports, the CLI and the compliance
checks on a real published release."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import numpy as np
import pytest
from lxml import etree

from conftest import LANELET2_DIR, mapsvc_cmd, require_shared

from standards.context import Context, load_config
from standards.grading import grade
from standards.report import render
from standards.runner import check_map, check_release, read_map, run_checks

CARGO = "autoware_tools_cargo_transport_map.osm"
KASHI = "tier4_kashiwanoha_lanelet2_map.osm"
GOOD_META = {"review_no": "GS(2026)1234号", "review_expiry": "2099-12-31", "qualification_no": "甲测资字1100000",
             "producer": "Test Survey Unit", "offset_provider": "vendor 1.0 (certified)"}


def real(name):
    return require_shared(LANELET2_DIR / name)


def one(m, check_id, **kw):
    [(_, hits, _)] = run_checks(Context(m, **kw), only=[check_id])
    return hits


# -- positional accuracy ----------------------------------------------------------------------------------
def _checkpoints(m, rows, shift_m):
    """True positions of some map points; ``shift_m`` moves each check point east (a map error of that size)."""
    lat = m.node_lat[rows]
    lon = m.node_lon[rows] + np.asarray(shift_m) / (111_320.0 * np.cos(np.radians(lat)))
    return lon, lat


def test_positional_accuracy_csv_and_gdal_layer(tmp_path):
    m = read_map(real(CARGO))
    rows = np.linspace(0, m.n_nodes - 1, 20).astype(int)
    lon, lat = _checkpoints(m, rows, 0.05)
    csv = tmp_path / "cp.csv"
    csv.write_text("name,lon,lat\n" + "".join(f"cp{k},{a:.10f},{b:.10f}\n"
                                               for k, (a, b) in enumerate(zip(lon, lat))))  # nearest match
    hits = one(m, "qa.positional_accuracy", checkpoints=csv)
    assert len(hits) == 0
    assert hits.extra["matched"] == 20 and abs(hits.extra["rmse_m"] - 0.05) < 0.01

    shift = np.where(np.arange(20) < 5, 1.0, 0.05)  # 5 of 20 points 1 m off: gross errors, 25 % > 5 %
    lon, lat = _checkpoints(m, rows, shift)
    feats = [{"type": "Feature", "properties": {"point_id": int(i)},
              "geometry": {"type": "Point", "coordinates": [a, b]}} for i, a, b in zip(m.node_id[rows], lon, lat)]
    gj = tmp_path / "cp.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    hits = one(m, "qa.positional_accuracy", checkpoints=gj)
    sev = hits.severity.tolist()
    assert sev.count("C") == 5 and "A" in sev, hits.detail
    assert hits.extra["gross_errors"] == 5


def test_completeness_against_reference(tmp_path):
    src = real(CARGO)
    ref = read_map(src)
    assert len(one(read_map(src), "qa.completeness", reference=ref)) == 0
    root = etree.fromstring(src.read_bytes())
    gone = [r for r in root.iterfind("relation") if r.find("tag[@k='type'][@v='lanelet']") is not None][7]
    root.remove(gone)
    cut = tmp_path / "cut.osm"
    cut.write_bytes(etree.tostring(root))
    hits = one(read_map(cut), "qa.completeness", reference=ref)
    assert hits.ids.tolist() == [int(gone.get("id"))] and "missing" in hits.detail[0]
    hits = one(read_map(src), "qa.completeness", reference=read_map(cut))
    assert hits.ids.tolist() == [int(gone.get("id"))] and "extra" in hits.detail[0]


def test_metadata():
    m = read_map(real("interaction_TestScenarioForScripts.osm"))
    assert len(one(m, "qa.metadata", metadata=GOOD_META)) == 0
    hits = one(m, "qa.metadata", metadata={**GOOD_META, "review_no": None})
    assert hits.severity.tolist() == ["A"]
    hits = one(m, "qa.metadata", metadata={**GOOD_META, "review_expiry": (dt.date.today() - dt.timedelta(1)).isoformat()})
    assert hits.severity.tolist() == ["A"] and "expired" in hits.detail[0]
    hits = one(m, "qa.metadata", metadata={k: v for k, v in GOOD_META.items() if k != "qualification_no"})
    assert hits.severity.tolist() == ["C"]


# -- grading --------------------------------------------------------------------------------------------
def test_grading_rules_from_config():
    cfg = load_config("grading.yaml")
    base = {"element": "logical_consistency", "applicable": True, "checked": 1000}
    v, _ = grade([{**base, "id": "x", "counts": {"D": 10}}], cfg)
    assert v["result"] == "pass" and v["score"] == 99.0 and v["grade"] == "excellent"
    v, _ = grade([{**base, "id": "x", "counts": {"A": 1}}], cfg)
    assert v["result"] == "fail" and v["reasons"][0]["rule"] == "class_a"
    v, els = grade([{**base, "id": "x", "counts": {"B": 40}}], cfg)  # 40 * 12 / 10 = 48 -> 52 < 60
    assert v["result"] == "fail" and any(r["rule"] == "element_below" for r in v["reasons"])
    assert next(e for e in els if e["id"] == "logical_consistency")["score"] == 52.0


# -- reports and CLI -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kashi_report():
    return check_map(real(KASHI), metadata=GOOD_META)


def test_report_json_html_pdf(kashi_report):
    r = kashi_report
    assert r["format"] == "mapsvc-quality-report/1"
    f = next(x for x in r["findings"] if x["check"] == "mapping.points_too_close")
    assert {"check", "severity", "kind", "id", "location"} <= set(f) and "lon" in f["location"]
    sev = [x["severity"] for x in r["findings"]]
    assert sev == sorted(sev, key=["A", "B", "C", "D", "info"].index)
    html = render(r, "html", "en").decode()
    order = [html.index(f"<h2>{s}") for s in ("Verdict", "Quality elements", "Findings", "Desensitisation summary",
                                     "Metadata", "Sign-off")]
    assert order == sorted(order)
    assert html.count("data:image/png;base64,") == sum(1 for x in r["findings"] if "sketch" in x) > 0
    zh = render(r, "html", "zh").decode()
    assert "检验结论" in zh and "检查者" in zh and ("不合格" in zh or "合格" in zh)
    for lang in ("en", "zh"):
        pdf = render(r, "pdf", lang)
        assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf or b"STSong" in pdf
    assert json.loads(render(r, "json")) == json.loads(json.dumps(r))


def test_public_report_generalises_positions():
    r = check_map(real(KASHI), metadata=GOOD_META, public=True)
    step = load_config("grading.yaml")["public_generalise_m"]
    located = [f for f in r["findings"] if "location" in f]
    assert located and all("x" not in f["location"] and f["location"]["precision_m"] == step for f in located)
    assert all(len(str(f["location"]["lon"]).split(".")[-1]) <= 4 for f in located)
    sketches = [f["sketch"] for f in r["findings"] if "sketch" in f]
    coords = np.array([c for s in sketches for line in s["lines"] for c in line] or [[0, 0]], float)
    assert np.allclose(coords % step, 0) or np.allclose(np.abs(coords % step - step), 0)


def test_cli_check_map(tmp_path, mapsvc_home):
    meta = tmp_path / "meta.yaml"
    meta.write_text(json.dumps(GOOD_META, ensure_ascii=False))
    out = tmp_path / "rep"
    p = subprocess.run(mapsvc_cmd() + ["check", str(real(CARGO)), "--report", str(out), "--metadata", str(meta)],
                       capture_output=True, check=False, text=True, timeout=120)
    assert p.returncode == 0, p.stderr + p.stdout
    assert "PASS" in p.stdout
    assert {x.name for x in out.iterdir()} >= {"report.json", "report.html", "report.pdf"}
    p = subprocess.run(mapsvc_cmd() + ["check", str(real(CARGO)), "--report", str(out), "--lang", "zh"],
                       capture_output=True, check=False, text=True, timeout=120)
    assert p.returncode == 1 and "FAIL" in p.stdout  # no map review number: class A
    assert "审图号" in (out / "report.html").read_text(encoding="utf-8")
    p = subprocess.run(mapsvc_cmd() + ["check", str(real(CARGO)), "--report", str(out), "--checkpoints",
                                       str(tmp_path / "none.csv")], capture_output=True, check=False, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("mapsvc: error:") and "none.csv" in p.stderr


# -- compliance on a real release ------------------------------------------------------------------------
def test_release_compliance(tmp_path, mapsvc_home):
    from mapsvc.config import home
    from mapsvc.pipeline import publish
    from tiles.signing import release_signature
    from tiles import cut, make_manifest, open_store

    src = real(KASHI)
    store_dir = home() / "store"
    publish(src, "r1", str(store_dir))
    store = open_store(str(store_dir))
    r = check_release(store, "r1", home(), metadata=GOOD_META)
    by = {c["id"]: c for c in r["checks"]}
    assert by["compliance.tile_integrity"]["count"] == 0
    assert by["compliance.desensitisation_scan"]["count"] == 0
    # public GCJ-02 is not certified: allowed (class C, reported) under the pilot-test profile only
    assert by["compliance.offset_provider"]["counts"].get("C", 0) >= 1  # (+1: a map in Japan is outside the region)
    assert not by["compliance.offset_provider"]["counts"].get("A")
    assert r["verdict"]["result"] == "fail"
    d = r["desensitisation"]
    assert d["provider"]["name"] == "gcj02" and d["audit_counts"] and d["rules"]
    assert '"lat"' not in json.dumps(d) and '"lon"' not in json.dumps(d) and all("x" not in f.get("location", {}) for f in r["findings"])

    # the same tiles recorded as offset by a certified provider: the offset check is silent
    from types import SimpleNamespace

    m1 = store.manifest("r1")
    rec = m1["desensitisation"]
    d = {**rec, "certified": True, "notice": None,
         "offset": {**rec["offset"], "name": "vendor", "certified": True, "points_outside_region": 0}}
    tiles1 = [SimpleNamespace(id=t["id"], data=store.tile("r1", t["id"])[0], sha256=t["sha256"], bytes=t["bytes"])
              for t in m1["tiles"]]
    mc = {**m1, "release": "cert", "desensitisation": d}
    store.publish("cert", tiles1, mc, attachments=release_signature(mc, home()))
    rc = check_release(store, "cert", home(), metadata=GOOD_META)
    assert {c["id"]: c["count"] for c in rc["checks"]}["compliance.offset_provider"] == 0

    # an uncertified offset recorded under the production profile: class A (recorded under the key releases
    # published before the spelling fix carry: still read)
    old = {k: v for k, v in m1.items() if k != "desensitisation"}
    mp = {**old, "release": "prod", "desensitization": {**rec, "profile": "production"}}
    store.publish("prod", tiles1, mp, attachments=release_signature(mp, home()))
    rp = check_release(store, "prod", home(), metadata=GOOD_META)
    assert {c["id"]: c for c in rp["checks"]}["compliance.offset_provider"]["counts"].get("A") == 1
    assert rp["verdict"]["result"] == "fail"

    # the same map published raw (never desensitised), with a road surface tag: the final scan fires
    root = etree.fromstring(src.read_bytes())
    ll = next(x for x in root.iterfind("relation") if x.find("tag[@k='type'][@v='lanelet']") is not None)
    etree.SubElement(ll, "tag", k="road_surface", v="asphalt")
    raw_path = tmp_path / "raw.osm"
    raw_path.write_bytes(etree.tostring(root))
    tiles = cut(read_map(raw_path), 13)
    manifest = make_manifest(tiles, 13, release="raw", desensitization=rec)
    store.publish("raw", tiles, manifest, attachments=release_signature(manifest, home()))
    r2 = check_release(store, "raw", home(), metadata=GOOD_META)
    scan = [f for f in r2["findings"] if f["check"] == "compliance.desensitisation_scan"]
    assert scan and any("road_surface" in f["detail"] or "SEC-09" in f["detail"] for f in scan), scan[:3]

    # a stored tile altered on disk, and a signature that no longer verifies
    t = store.manifest("r1")["tiles"][0]
    blob = store.blob_file(t["sha256"])
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"\0")
    for pub in (home() / "keys").glob("*.pub"):
        pub.unlink()
    r3 = check_release(store, "r1", home(), metadata=GOOD_META)
    integ = [f["detail"] for f in r3["findings"] if f["check"] == "compliance.tile_integrity"]
    assert any(str(t["id"]) in d for d in integ) and any("signature" in d for d in integ), integ


def test_cli_check_release_stores_report(tmp_path, mapsvc_home):
    from mapsvc.config import home
    from mapsvc.pipeline import publish
    from tiles import open_store

    publish(real(KASHI), "r2", str(home() / "store"))
    out = tmp_path / "rep"
    p = subprocess.run(mapsvc_cmd() + ["check", "--release", "r2", "--report", str(out)], capture_output=True, check=False,
                       text=True, timeout=120, env={**os.environ, "MAPSVC_HOME": str(home())})
    assert p.returncode == 1, p.stderr
    stored = json.loads(open_store(str(home() / "store")).attachment("r2", "report.json"))
    assert stored["subject"]["name"] == "r2" and stored["audience"] == "public"
    assert stored == json.loads((out / "report.json").read_text())


def test_render_language_tags_and_errors(kashi_report):
    from standards import StandardsError

    assert "检验结论" in render(kashi_report, "html", "zh-CN").decode()
    assert "Verdict" in render(kashi_report, "html", "en-GB").decode()
    with pytest.raises(StandardsError):
        render(kashi_report, "html", "fr")
    with pytest.raises(StandardsError):
        render(kashi_report, "docx")


def test_reference_and_checkpoint_checks_on_every_map(real_map, tmp_path):
    """Completeness against itself and check points taken from its own points are silent on every real map."""
    m = read_map(real_map)
    ctx = Context(m)
    rows = np.linspace(0, m.n_nodes - 1, 10).astype(int)
    csv = tmp_path / "cp.csv"
    if m.local_only:
        xy = ctx.xy[rows]
        csv.write_text("point_id,x,y\n" + "".join(f"{i},{a:.4f},{b:.4f}\n" for i, (a, b) in zip(m.node_id[rows], xy)))
    else:
        csv.write_text("point_id,lon,lat\n" + "".join(
            f"{i},{a:.11f},{b:.11f}\n" for i, a, b in zip(m.node_id[rows], m.node_lon[rows], m.node_lat[rows])))
    ctx = Context(m, reference=read_map(real_map), checkpoints=csv)
    out = {c.id: h for c, h, _ in run_checks(ctx, only=["qa.completeness", "qa.positional_accuracy"])}
    assert len(out["qa.completeness"]) == 0
    assert out["qa.completeness"].extra["lanelets"] == out["qa.completeness"].extra["reference_lanelets"] > 0
    assert len(out["qa.positional_accuracy"]) == 0 and out["qa.positional_accuracy"].extra["matched"] == 10
