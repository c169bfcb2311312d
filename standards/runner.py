"""Run the registered checks on a map or a release and build the report dictionary (report.json)."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import shapely
import yaml

from lanelets.errors import MapError
from lanelets.osm import OsmMap, merge, osm_document, read_osm
from standards.context import Context, load_config
from standards.errors import StandardsError
from standards.registry import SEVERITIES, all_checks
from tiles.store import desensitisation_of

REPORT_FORMAT = "mapsvc-quality-report/1"
_SEV_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


def read_map(source, name: str | None = None) -> OsmMap:
    """Read a map for checking: references that do not resolve are findings here, not a refusal."""
    m = source if isinstance(source, OsmMap) else read_osm(source, validate=False, name=name)
    for kind, ids in (("point", m.node_id), ("line string", m.way_id), ("relation", m.rel_id)):
        if len(ids) != len(np.unique(ids)):
            raise MapError(f"{m.source}: duplicate {kind} ids: elements cannot be told apart")
    return m


def load_metadata(path) -> dict:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise StandardsError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise StandardsError(f"{path}: expected a mapping of metadata fields")
    return doc


def run_checks(ctx: Context, only: list[str] | None = None) -> list[tuple]:
    """(check, hits or None, seconds) per registered check, in registry order."""
    out = []
    for cid, chk in all_checks().items():
        if only is not None and cid not in only:
            continue
        t0 = time.perf_counter()
        hits = chk.func(ctx) if all(ctx.has(n) for n in chk.needs) else None
        out.append((chk, hits, time.perf_counter() - t0))
    return out


def check_map(path_or_map, *, origin=None, reference=None, checkpoints=None, metadata=None,
              public: bool = False, only=None, release=None, subject=None) -> dict:
    m = path_or_map if isinstance(path_or_map, OsmMap) else read_map(path_or_map)
    ref = None
    if reference is not None:
        ref = reference if isinstance(reference, OsmMap) else read_map(reference)
    md = dict(metadata or {})
    ctx = Context(m, origin=origin, reference=ref, checkpoints=checkpoints, metadata=md, release=release)
    results = run_checks(ctx, only)
    return build_report(ctx, results, public=public, subject=subject)


def _severity(chk, hits) -> np.ndarray:
    return hits.severity if hits.severity is not None else np.full(len(hits), chk.severity, dtype=object)


def build_report(ctx: Context, results, *, public: bool, subject: dict | None) -> dict:
    from standards.grading import grade

    cfg = ctx.grading
    checks, findings = [], []
    for chk, hits, secs in results:
        entry = {"id": chk.id, "element": chk.element, "severity": chk.severity, "description": chk.description,
                 "applicable": hits is not None, "checked": 0, "count": 0, "counts": {}, "seconds": round(secs, 4)}
        if hits is not None:
            sev = _severity(chk, hits)
            entry["checked"] = int(hits.checked)
            entry["count"] = len(hits)
            entry["counts"] = {s: int((sev == s).sum()) for s in SEVERITIES if (sev == s).any()}
            if hits.extra:
                entry["stats"] = hits.extra
            findings.append((chk, hits, sev))
        checks.append(entry)
    verdict, elements = grade(checks, cfg)
    for e in elements:
        e["checks"] = [c["id"] for c in checks if c["element"] == e["id"]]
    report = {
        "format": REPORT_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "audience": "public" if public else "internal",
        "subject": subject or {"kind": "map", "name": Path(ctx.m.source).name},
        "verdict": verdict,
        "elements": elements,
        "checks": checks,
        "findings": _findings_json(ctx, findings, public),
        "metadata": _metadata_json(ctx),
        "grading": {**{k: cfg[k] for k in ("deduction", "per_items", "element_fail_below", "grades")},
                    "max_listed_findings": cfg["report"]["max_listed_findings"], "config_sha256": config_sha256()},
    }
    report["subject"].setdefault("summary", _summary(ctx))
    return report


def _summary(ctx) -> dict:
    return {"points": ctx.m.n_nodes, "line_strings": ctx.m.n_ways, "lanelets": int(len(ctx.lanelet_rows)),
            "regulatory_elements": int((ctx.rel_type == "regulatory_element").sum()),
            "areas": int((ctx.rel_type == "multipolygon").sum()), "georeferenced": ctx.georeferenced}


def _metadata_json(ctx) -> dict:
    md = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in ctx.metadata.items() if k != "today"}
    return md


def _findings_json(ctx, findings, public: bool) -> list[dict]:
    """Every finding, worst first; the worst ``max_finding_maps`` carry a sketch for the small map."""
    cfg = ctx.grading
    rows = []
    for chk, hits, sev in findings:
        for i in range(len(hits)):
            rows.append((_SEV_ORDER[sev[i]], chk, hits, i, sev[i]))
    rows.sort(key=lambda r: r[0])  # stable: registry order within a class
    n_maps = cfg["report"]["max_finding_maps"]
    out = []
    lonlat = None
    if rows and ctx.georeferenced:
        xs = np.array([h.x[i] for _, _, h, i, _ in rows])
        ys = np.array([h.y[i] for _, _, h, i, _ in rows])
        step = cfg["public_generalise_m"]
        if public:  # snap to the generalisation grid before anything leaves this function
            xs, ys = np.round(xs / step) * step, np.round(ys / step) * step
        lonlat = ctx.to_lonlat(xs, ys)
    sketched = 0
    for k, (_o, chk, hits, i, s) in enumerate(rows):
        x, y = float(hits.x[i]), float(hits.y[i])
        f = {"check": chk.id, "element": chk.element, "severity": s, "kind": str(hits.kind[i]),
             "id": int(hits.ids[i]), "detail": hits.detail[i] if hits.detail else ""}
        if np.isfinite(x) and np.isfinite(y):
            if public:
                loc = {"precision_m": cfg["public_generalise_m"]}
            else:
                loc = {"x": round(x, 3), "y": round(y, 3), "frame": "local"}
            if lonlat is not None:
                nd = 4 if public else 8
                loc["lon"], loc["lat"] = round(float(lonlat[0][k]), nd), round(float(lonlat[1][k]), nd)
            f["location"] = loc
            if sketched < n_maps and s != "info":
                f["sketch"] = _sketch(ctx, x, y, public)
                sketched += 1
        out.append(f)
    return out


def _sketch(ctx, x: float, y: float, public: bool) -> dict:
    """Line work around a finding, relative to it (metres). Public: generalised to the 50 m grid."""
    if "_way_tree" not in ctx.__dict__:
        geoms = ctx.way_geoms
        ok = np.flatnonzero(geoms != None)  # noqa: E711 (object array)
        ctx.__dict__["_way_tree"] = (shapely.STRtree(geoms[ok]), geoms[ok])
    tree, geoms = ctx.__dict__["_way_tree"]
    step = ctx.grading["public_generalise_m"]
    half = 10 * step if public else 30.0
    if public:
        x, y = round(x / step) * step, round(y / step) * step
    box = shapely.box(x - half, y - half, x + half, y + half)
    near = geoms[tree.query(box)]
    clipped = shapely.clip_by_rect(near, x - half, y - half, x + half, y + half)
    clipped = clipped[~shapely.is_empty(clipped)]
    if public:
        clipped = shapely.set_precision(shapely.simplify(clipped, step), step)
    lines = []
    for part in shapely.get_parts(clipped).tolist():
        if part.geom_type != "LineString" or part.is_empty:
            continue
        c = np.asarray(part.coords)[:, :2] - [x, y]
        lines.append(np.round(c, 0 if public else 2).tolist())
    return {"half_m": half, "lines": lines[:400], "marker": "cell" if public else "point", "cell_m": step}


# -- releases ------------------------------------------------------------------------------------------
def merge_tiles(tiles) -> OsmMap:
    """One map from a release's self-contained tiles (elements appear in several tiles; keep each once)."""
    maps = [read_osm(t.data, name=f"tile {t.id}", validate=False) for t in tiles]
    if not maps:
        return read_map(osm_document(b'<osm version="0.6">', []), name="release")
    return read_map(merge(maps, name="release", validate=False))


def check_release(store, name: str, home, *, reference=None, checkpoints=None, metadata=None,
                  public: bool = True) -> dict:
    from standards.checks.compliance import release_tiles

    manifest = store.manifest(name)
    rel = {"store": store, "name": name, "manifest": manifest, "home": Path(home)}
    m = merge_tiles(release_tiles(_Ctx(rel)))
    d = desensitisation_of(manifest) or {}
    md = {**{k: manifest[k] for k in ("review_no", "review_expiry", "qualification_no", "producer")
             if k in manifest},
          **(d.get("metadata") or {}), **(metadata or {})}
    off = d.get("offset") or {}
    if off.get("name"):
        md.setdefault("offset_provider", f"{off['name']} {off.get('version', '')}".strip()
                      + (" (certified)" if off.get("certified") else " (not certified)"))
    subject = {"kind": "release", "name": name, "tiles": len(manifest["tiles"]), "level": manifest.get("level"),
               "source": (manifest.get("source") or {}).get("file"),
               "source_sha256": (manifest.get("source") or {}).get("sha256"),
               "manifest_sha256": hashlib.sha256(store.manifest_raw(name)).hexdigest()}
    report = check_map(m, reference=reference, checkpoints=checkpoints, metadata=md, public=public,
                       release=rel, subject=subject)
    report["desensitisation"] = desensitisation_summary(store, name, manifest)
    return report


class _Ctx:
    def __init__(self, release):
        self.release = release


def desensitisation_summary(store, name: str, manifest: dict) -> dict:
    """Rules applied, counts and provider, from the manifest and the audit's counts: never a coordinate."""
    from tiles.errors import StoreError

    d = desensitisation_of(manifest) or {}
    off = d.get("offset") or {}
    out = {"profile": d.get("profile"), "certified": d.get("certified"), "notice": d.get("notice"),
           "provider": {k: off.get(k) for k in ("name", "version", "certified", "points_moved",
                                                 "points_outside_region")},
           "rules": (d.get("rules") or {}).get("rules", []), "rules_file": (d.get("rules") or {}).get("file"),
           "rules_sha256": (d.get("rules") or {}).get("sha256"),
           "matches": d.get("matches"), "removed": d.get("removed"), "removed_lanelets": d.get("removed_lanelets"),
           "flagged_for_review": d.get("flagged_for_review"),
           "restricted_areas": d.get("restricted_areas"),
           "position_copies_dropped": d.get("position_copies_dropped")}
    try:
        audit = json.loads(store.attachment(name, "audit.json", restricted_ok=True))
        counts: dict[str, dict[str, int]] = {}
        for a in audit.get("actions", []):
            c = counts.setdefault(a.get("rule", "?"), {})
            c[a.get("action", "?")] = c.get(a.get("action", "?"), 0) + len(a.get("ids") or [])
        out["audit_counts"] = [{"rule": r, "action": act, "elements": n}
                               for r, acts in sorted(counts.items()) for act, n in sorted(acts.items())]
    except (StoreError, ValueError):
        out["audit_counts"] = None
    return out


def config_sha256() -> str:
    h = hashlib.sha256()
    for name in ("grading.yaml", "rules.yaml", "lanelet2_schema.yaml"):
        h.update(json.dumps(load_config(name), sort_keys=True, default=str).encode())
    return h.hexdigest()
