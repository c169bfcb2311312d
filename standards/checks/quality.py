"""Quality elements of GB/T 24356 / GB/T 18316 beyond geometry: spatial reference, positional accuracy against
check points, attribute values, completeness against a reference map, metadata.
"""
from __future__ import annotations

import datetime as dt
import re

import numpy as np
import shapely

from standards.errors import StandardsError
from standards.registry import Hits, check


@check("schema.speed_limit", element="attribute_accuracy", severity="C",
       description="A speed_limit that is not a number with a known unit (km/h, mph, m/s), or is implausible.")
def speed_limit(ctx) -> Hits:
    cfg = ctx.rules["speed_limit"]
    units = "|".join(re.escape(u) for u in cfg["units"])
    pat = re.compile(rf"^\s*(\d+(?:\.\d+)?)\s*({units})?\s*$")
    factor = {"mph": 1.609344, "m/s": 3.6, "mps": 3.6}
    rows, detail, checked = [], [], 0
    for r, tags in enumerate(ctx.m.rel_tags):  # per relation (few), not per point
        v = tags.get("speed_limit")
        if v is None:
            continue
        checked += 1
        mt = pat.match(v)
        if not mt:
            rows.append(r)
            detail.append(f"speed_limit={v}: not a number with a known unit")
        elif float(mt.group(1)) * factor.get(mt.group(2) or "", 1.0) > cfg["max_kmh"]:
            rows.append(r)
            detail.append(f"speed_limit={v}: above {cfg['max_kmh']} km/h")
    rows = np.array(rows, np.int64)
    xy = ctx.relation_centroid[rows] if len(rows) else np.zeros((0, 2))
    kind = np.array([{"lanelet": "lanelet", "multipolygon": "area"}.get(t, "regulatory_element")
                     for t in ctx.rel_type[rows].tolist()], dtype=object)
    return Hits(kind, ctx.m.rel_id[rows], xy[:, 0], xy[:, 1], detail, checked=checked)


@check("qa.spatial_reference", element="spatial_reference", severity="B",
       description="Positions are not georeferenced (local only, or Lanelet2 at origin 0,0) or the map spans "
                   "more than one UTM zone (Lanelet2's UtmProjector needs one).")
def spatial_reference(ctx) -> Hits:
    m = ctx.m
    problems = []
    if m.local_only:
        problems.append("points have only local_x/local_y: no datum or projection is declared")
    else:
        lon, lat = m.node_lon, m.node_lat
        ok = ~np.isnan(lat)
        if ok.any() and np.all((np.abs(lat[ok]) < 1.0) & (np.abs(lon[ok]) < 1.0)):
            problems.append("all points lie within 1 degree of (0, 0): local metres stored as lat/lon, "
                            "not georeferenced")
        elif ok.any():
            zones = np.unique(np.floor((lon[ok] + 180) / 6).astype(int))
            if len(zones) > 1:
                problems.append(f"map spans {len(zones)} UTM zones")
        if (~ok).any() and ok.any():
            problems.append(f"{int((~ok).sum())} points have no lat/lon")
    return Hits("map", np.zeros(len(problems), np.int64), np.nan, np.nan, problems, checked=1)


# -- positional accuracy ---------------------------------------------------------------------------------
_X_NAMES = "lon,longitude,x,X,easting,E"
_Y_NAMES = "lat,latitude,y,Y,northing,N"
_ID_FIELDS = ("point_id", "node_id", "node")


def read_checkpoints(path) -> dict:
    """Check points from a CSV (lon/lat or x/y columns) or any GDAL/OGR point layer. Returns arrays
    ``x``, ``y`` (lon/lat when the layer has a CRS, else as written), ``point_id`` (map point id or -1),
    ``name``, and whether the layer had a CRS / the numbers look like degrees."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    path = str(path)
    opts = [f"X_POSSIBLE_NAMES={_X_NAMES}", f"Y_POSSIBLE_NAMES={_Y_NAMES}", "KEEP_GEOM_COLUMNS=NO"]
    try:
        ds = gdal_open(path, opts)
    except RuntimeError as exc:
        raise StandardsError(f"{path}: not a readable point layer: {str(exc).splitlines()[0]}") from None
    layer = ds.GetLayer(0)
    if layer is None:
        raise StandardsError(f"{path}: no layer")
    defn = layer.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    id_field = next((f for f in _ID_FIELDS if f in fields), None)
    srs = layer.GetSpatialRef()
    tr = None
    if srs is not None:
        wgs = osr.SpatialReference()
        wgs.ImportFromEPSG(4326)
        wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        tr = osr.CoordinateTransformation(srs, wgs)
    xs, ys, pid, names = [], [], [], []
    for f in layer:  # per check point (a survey's few hundred), not per map point
        g = f.GetGeometryRef()
        if g is None:
            continue
        if tr is not None:
            g = g.Clone()
            g.Transform(tr)
        xs.append(g.GetX())
        ys.append(g.GetY())
        v = f.GetField(id_field) if id_field else None
        pid.append(int(v) if v not in (None, "") else -1)
        names.append(str(f.GetFID()))
    if not xs:
        raise StandardsError(f"{path}: no check points with a position")
    x, y = np.array(xs, float), np.array(ys, float)
    return {"x": x, "y": y, "point_id": np.array(pid, np.int64), "name": names, "has_srs": srs is not None,
            "degree_like": bool(np.all((np.abs(x) <= 180) & (np.abs(y) <= 90))), "source": path}


def gdal_open(path: str, opts: list[str]):
    from osgeo import gdal

    gdal.UseExceptions()
    if path.lower().endswith(".csv"):
        return gdal.OpenEx(path, gdal.OF_VECTOR, open_options=opts)
    return gdal.OpenEx(path, gdal.OF_VECTOR)


@check("qa.positional_accuracy", element="positional_accuracy", severity="B",
       description="Plane positions against surveyed check points: RMSE above the limit (B), gross errors "
                   "(residual above 2x the limit), a gross-error ratio above 5 % (A, 不合格).",
       needs=("checkpoints",))
def positional_accuracy(ctx) -> Hits:
    cfg = ctx.grading["positional_accuracy"]
    cp = ctx.checkpoints if isinstance(ctx.checkpoints, dict) else read_checkpoints(ctx.checkpoints)
    # A layer with a CRS is transformed to lon/lat; without one, degree-like numbers on a georeferenced map
    # are lon/lat and anything else is metres in the map's local frame (local_x/local_y).
    if cp["has_srs"] or (cp["degree_like"] and ctx.georeferenced):
        from lanelets.projection import lonlat_to_local

        if not ctx.georeferenced:
            raise StandardsError(f"{cp['source']}: check points are in lon/lat but the map has no georeference")
        tx, ty = lonlat_to_local(cp["x"], cp["y"], *ctx.origin)
        txy = np.column_stack([tx, ty])
    else:
        txy = np.column_stack([cp["x"], cp["y"]])
    m = ctx.m
    row = np.full(len(txy), -1, np.int64)
    by_id = cp["point_id"] >= 0
    if by_id.any():
        order = np.argsort(m.node_id)
        pos = np.minimum(np.searchsorted(m.node_id[order], cp["point_id"][by_id]), len(order) - 1)
        found = m.node_id[order][pos] == cp["point_id"][by_id]
        row[np.flatnonzero(by_id)[found]] = order[pos[found]]
    near = ~by_id
    if near.any():
        ok = np.flatnonzero(~np.isnan(ctx.xy).any(axis=1))
        tree = shapely.STRtree(shapely.points(ctx.xy[ok]))
        qi, ti = tree.query_nearest(shapely.points(txy[near]), max_distance=cfg["match_radius_m"],
                                    all_matches=False)
        row[np.flatnonzero(near)[qi]] = ok[ti]
    matched = row >= 0
    res = np.full(len(txy), np.nan)
    res[matched] = np.hypot(*(ctx.xy[row[matched]] - txy[matched]).T)
    n = int(matched.sum())
    allowed = cfg["allowed_rmse_m"]
    gross = matched & (res > cfg["gross_factor"] * allowed)
    good = matched & ~gross
    rmse = float(np.sqrt(np.mean(res[good] ** 2))) if good.any() else float("nan")
    ratio = float(gross.sum() / n) if n else float("nan")
    kind, ids, x, y, detail, sev = [], [], [], [], [], []
    for i in np.flatnonzero(gross).tolist():
        kind.append("point")
        ids.append(int(m.node_id[row[i]]))
        x.append(txy[i, 0])
        y.append(txy[i, 1])
        detail.append(f"check point {cp['name'][i]}: gross error {res[i]:.2f} m")
        sev.append("C")
    for i in np.flatnonzero(~matched).tolist():
        kind.append("point")
        ids.append(int(cp["point_id"][i]))
        x.append(txy[i, 0])
        y.append(txy[i, 1])
        detail.append(f"check point {cp['name'][i]}: no map point matched")
        sev.append("D")
    if n and rmse > allowed:
        kind.append("map"), ids.append(0), x.append(np.nan), y.append(np.nan), sev.append("B")
        detail.append(f"plane RMSE {rmse:.3f} m exceeds {allowed} m")
    if n and ratio > cfg["gross_ratio_fail"]:
        kind.append("map"), ids.append(0), x.append(np.nan), y.append(np.nan), sev.append("A")
        detail.append(f"gross errors {ratio:.1%} of check points (over {cfg['gross_ratio_fail']:.0%}): 不合格")
    if not n:
        kind.append("map"), ids.append(0), x.append(np.nan), y.append(np.nan), sev.append("B")
        detail.append("no check point matched a map point")
    stats = {"check_points": len(txy), "matched": n, "rmse_m": None if np.isnan(rmse) else round(rmse, 4),
             "gross_errors": int(gross.sum()), "gross_ratio": None if np.isnan(ratio) else round(ratio, 4),
             "allowed_rmse_m": allowed}
    return Hits(np.array(kind, dtype=object), ids, np.array(x, float), np.array(y, float), detail,
                checked=max(1, len(txy)), severity=np.array(sev, dtype=object), extra=stats)


# -- completeness ----------------------------------------------------------------------------------------
@check("qa.completeness", element="completeness", severity="C",
       description="Lanelets of the reference map missing here (遗漏), or lanelets here the reference lacks (多余).",
       needs=("reference",))
def completeness(ctx) -> Hits:
    from standards.checks.autoware import lanelet_polygons
    from standards.context import Context

    ref = Context(ctx.reference, origin=ctx.origin if ctx.georeferenced else None)
    if ctx.georeferenced != ref.georeferenced:
        raise StandardsError(f"{ctx.reference.source}: reference and map are not in the same kind of "
                             "coordinates (one is local-only)")
    a_idx, a_poly = lanelet_polygons(ctx)
    b_idx, b_poly = lanelet_polygons(ref)
    min_iou = ctx.grading["completeness"]["min_iou"]
    a_hit = np.zeros(len(a_poly), bool)
    b_hit = np.zeros(len(b_poly), bool)
    if len(a_poly) and len(b_poly):
        i, j = shapely.STRtree(b_poly).query(a_poly, predicate="intersects")
        inter = shapely.area(shapely.intersection(a_poly[i], b_poly[j]))
        union = shapely.area(a_poly[i]) + shapely.area(b_poly[j]) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            good = inter / union >= min_iou
        a_hit[i[good]] = True
        b_hit[j[good]] = True
    miss = np.flatnonzero(~b_hit)
    extra = np.flatnonzero(~a_hit)
    xy = np.vstack([ref.lanelet_centroid[b_idx[miss]], ctx.lanelet_centroid[a_idx[extra]]]) \
        if len(miss) + len(extra) else np.zeros((0, 2))
    ids = np.concatenate([ref.m.rel_id[ref.lanelet_rows[b_idx[miss]]], ctx.m.rel_id[ctx.lanelet_rows[a_idx[extra]]]])
    detail = [f"missing: reference lanelet {i} has no counterpart" for i in ids[:len(miss)].tolist()] + \
             [f"extra: lanelet {i} is not in the reference" for i in ids[len(miss):].tolist()]
    stats = {"reference": ctx.reference.source.rsplit("/", 1)[-1], "reference_lanelets": len(b_poly),
             "lanelets": len(a_poly), "missing": len(miss), "extra": len(extra)}
    return Hits("lanelet", ids, xy[:, 0], xy[:, 1], detail, checked=max(1, len(a_poly) + len(b_poly)), extra=stats)


# -- metadata --------------------------------------------------------------------------------------------
def _date(v):
    if isinstance(v, dt.date):
        return v
    try:
        return dt.date.fromisoformat(str(v))
    except ValueError:
        return None


@check("qa.metadata", element="metadata", severity="C",
       description="Map review number (审图号) missing (A) or expired (A), producer qualification number or offset "
                   "provider not recorded.")
def metadata(ctx) -> Hits:
    md = ctx.metadata
    today = _date(md.get("today")) or dt.date.today()
    items = []
    if not md.get("review_no"):
        items.append(("A", "no map review number (审图号): the map may not be delivered or published"))
    else:
        exp = _date(md.get("review_expiry"))
        if md.get("review_expiry") is None:
            items.append(("B", f"review number {md['review_no']}: no expiry date recorded"))
        elif exp is None:
            items.append(("B", f"review expiry {md['review_expiry']!r} is not a date (YYYY-MM-DD)"))
        elif exp < today:
            items.append(("A", f"review number {md['review_no']} expired on {exp.isoformat()}"))
    if not md.get("qualification_no"):
        items.append(("C", "no producer qualification number (资质证书编号)"))
    if not md.get("offset_provider"):
        items.append(("D", "no offset provider recorded"))
    sev = np.array([s for s, _ in items], dtype=object)
    return Hits("map", np.zeros(len(items), np.int64), np.nan, np.nan, [d for _, d in items], checked=4,
                severity=sev)
