"""Read and check survey input (GeoPackage / GeoJSON) with GDAL's OGR.

The schema is data (the ``*_FIELDS`` tables below), documented in docs/survey-input.md. Every problem
raises :class:`lanelets.errors.MapError` with one line naming the file and the problem.
Geometries come back as shapely arrays in WGS-84 lon/lat (reprojected with osr when the layer has
another CRS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import shapely
from osgeo import ogr, osr

from lanelets.errors import MapError

ogr.UseExceptions()
osr.UseExceptions()

# road_class -> lanelet tags, and rank (at a junction without lights, lower ranks yield to the highest).
# A table, not an if-chain: add a class by adding a row.
ROAD_CLASSES: dict[str, dict] = {
    "expressway": {"subtype": "highway", "location": "nonurban", "rank": 5},
    "motorway": {"subtype": "highway", "location": "nonurban", "rank": 5},
    "urban_expressway": {"subtype": "highway", "location": "urban", "rank": 5},
    "ramp": {"subtype": "highway", "location": "nonurban", "rank": 4},
    "urban_arterial": {"subtype": "road", "location": "urban", "rank": 3},
    "urban_collector": {"subtype": "road", "location": "urban", "rank": 2},
    "rural": {"subtype": "road", "location": "nonurban", "rank": 2},
    "urban_local": {"subtype": "road", "location": "urban", "rank": 1},
}
# classes whose one-way roads attach to a through road's outer lanes (merge / diverge) instead of a junction
RAMP_CLASSES = frozenset({"ramp"})

LINE_TYPES = frozenset({"line_thin", "line_thick", "curbstone", "road_border", "virtual", "guard_rail", "wall",
                        "fence", "stop_line"})
LINE_SUBTYPES = frozenset({"solid", "dashed", "solid_solid", "dashed_solid", "solid_dashed", "dashed_dashed",
                           "high", "low", ""})

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


def _as_int(v):
    if isinstance(v, bool):
        raise ValueError
    f = float(v)
    if f != int(f):
        raise ValueError
    return int(f)


def _as_bool(v):
    if isinstance(v, (bool, int, np.integer)) and int(v) in (0, 1):
        return bool(v)
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError


@dataclass(frozen=True)
class Field:
    name: str
    parse: Callable[[Any], Any]
    ok: Callable[[Any], bool]
    expected: str
    required: bool = True
    default: Any = None


ROAD_FIELDS = (
    Field("lanes_forward", _as_int, lambda v: 0 <= v <= 8, "an integer 0..8"),
    Field("lanes_backward", _as_int, lambda v: 0 <= v <= 8, "an integer 0..8", required=False),
    Field("one_way", _as_bool, lambda v: True, "a boolean", required=False),
    Field("lane_width", float, lambda v: 2.0 <= v <= 6.0, "metres in 2..6"),
    Field("speed_limit", float, lambda v: 5.0 <= v <= 200.0, "km/h in 5..200"),
    Field("road_class", lambda v: str(v).strip(), lambda v: v in ROAD_CLASSES, "one of " + "/".join(ROAD_CLASSES)),
    Field("name", str, lambda v: True, "text", required=False, default=""),
    Field("id", lambda v: str(v).strip(), lambda v: v != "", "a non-empty id", required=False),
    Field("signal_start", _as_bool, lambda v: True, "a boolean", required=False, default=False),
    Field("signal_end", _as_bool, lambda v: True, "a boolean", required=False, default=False),
)
BOUNDARY_FIELDS = (
    Field("road_id", lambda v: str(v).strip(), lambda v: v != "", "the id of a roads feature"),
    Field("position", _as_int, lambda v: 0 <= v <= 16, "an integer 0..16 (0 = left edge)"),
    Field("type", lambda v: str(v).strip(), lambda v: v in LINE_TYPES, "one of " + "/".join(sorted(LINE_TYPES))),
    Field("subtype", lambda v: "" if v is None else str(v).strip(), lambda v: v in LINE_SUBTYPES,
          "one of " + "/".join(sorted(s for s in LINE_SUBTYPES if s)), required=False, default=""),
)
JUNCTION_FIELDS = (
    Field("signalled", _as_bool, lambda v: True, "a boolean"),
)
# layer -> (geometry type, fields, required layer?)
LAYERS = {
    "roads": (ogr.wkbLineString, ROAD_FIELDS, True),
    "lane_boundaries": (ogr.wkbLineString, BOUNDARY_FIELDS, False),
    "junctions": (ogr.wkbPoint, JUNCTION_FIELDS, False),
}


@dataclass
class SurveyLayer:
    fids: list[int] = field(default_factory=list)
    geoms: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))  # shapely, lon/lat
    rows: list[dict] = field(default_factory=list)


def _open(path: Path):
    if not path.exists():
        raise MapError(f"{path}: no such file")
    if path.is_dir():
        raise MapError(f"{path}: is a folder, expected a .gpkg or .geojson file")
    if path.stat().st_size == 0:
        raise MapError(f"{path}: empty file")
    try:
        ds = ogr.Open(str(path), 0)
    except RuntimeError as e:
        raise MapError(f"{path}: cannot read as GeoPackage/GeoJSON: {str(e).splitlines()[0]}") from None
    if ds is None:
        raise MapError(f"{path}: cannot read as GeoPackage/GeoJSON")
    return ds


def _select(ds, path: Path, name: str):
    """Features of layer `name`: a layer of that name, or (GeoJSON) the features whose `layer` property is `name`."""
    lyr = ds.GetLayerByName(name)
    if lyr is not None:
        return lyr, list(lyr)
    if ds.GetLayerCount() == 1:
        lyr = ds.GetLayer(0)
        defn = lyr.GetLayerDefn()
        if defn.GetFieldIndex("layer") >= 0:
            feats = [f for f in lyr if (f.GetField("layer") or "") == name]
            return (lyr, feats) if feats else (None, None)
        if name == "roads" and ds.GetDriver().GetName() == "GeoJSON":
            return lyr, list(lyr)  # a plain FeatureCollection of road centre lines
    return None, None


def _to_wgs84(path: Path, lyr, name: str):
    src = lyr.GetSpatialRef()
    if src is None:
        return None  # GeoJSON without crs member: RFC 7946 says WGS-84 lon/lat
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(4326)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    src = src.Clone()
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if src.IsSame(dst):
        return None
    try:
        return osr.CoordinateTransformation(src, dst)
    except RuntimeError as e:
        raise MapError(f"{path}: layer {name}: cannot reproject its CRS to WGS-84: {str(e).splitlines()[0]}") from None


def read_layer(ds, path: Path, name: str) -> SurveyLayer | None:
    gtype, fields, required = LAYERS[name]
    lyr, feats = _select(ds, path, name)
    if lyr is None:
        if required:
            names = ", ".join(ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())) or "none"
            raise MapError(f"{path}: no '{name}' layer (layers: {names})")
        return None
    if not feats:
        if required:
            raise MapError(f"{path}: layer {name} has no features")
        return None
    defn = lyr.GetLayerDefn()
    present = {defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())}
    for f in fields:
        if f.required and f.name not in present:
            raise MapError(f"{path}: layer {name} lacks field '{f.name}'")
    if name == "roads" and not present & {"lanes_backward", "one_way"}:
        raise MapError(f"{path}: layer roads lacks field 'lanes_backward' (or 'one_way')")
    ct = _to_wgs84(path, lyr, name)
    out = SurveyLayer()
    wkbs = []
    want = ogr.GeometryTypeToName(gtype)
    for feat in feats:
        fid = feat.GetFID()
        geom = feat.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            raise MapError(f"{path}: layer {name} feature {fid}: no geometry")
        got = ogr.GT_Flatten(geom.GetGeometryType())
        if got == ogr.wkbMultiLineString and gtype == ogr.wkbLineString and geom.GetGeometryCount() == 1:
            geom, got = geom.GetGeometryRef(0), gtype  # many GIS tools save every line as a 1-part multi-line
        if got != gtype:
            raise MapError(f"{path}: layer {name} feature {fid}: geometry is {ogr.GeometryTypeToName(got)}, "
                           f"expected {want}")
        if got == ogr.wkbLineString and geom.GetPointCount() < 2:  # GEOS cannot even hold such a line
            raise MapError(f"{path}: layer {name} feature {fid}: line with fewer than 2 points")
        if ct is not None:
            geom = geom.Clone()
            try:
                geom.Transform(ct)
            except RuntimeError:
                raise MapError(f"{path}: layer {name} feature {fid}: coordinates cannot be reprojected "
                               f"to WGS-84") from None
        wkbs.append(bytes(geom.ExportToIsoWkb()))
        row = {}
        for f in fields:
            raw = feat.GetField(f.name) if f.name in present else None
            if raw is None or (isinstance(raw, str) and raw.strip() == "" and f.required):
                if f.required:
                    raise MapError(f"{path}: layer {name} feature {fid}: field '{f.name}' is empty, "
                                   f"expected {f.expected}")
                row[f.name] = f.default
                continue
            try:
                val = f.parse(raw)
                good = f.ok(val)
            except (TypeError, ValueError):
                good = False
            if not good:
                raise MapError(f"{path}: layer {name} feature {fid}: {f.name}={raw!r} invalid, expected {f.expected}")
            row[f.name] = val
        out.fids.append(fid)
        out.rows.append(row)
    with np.errstate(invalid="ignore"):  # NaN coordinates: reported just below as one line, not as a warning
        out.geoms = shapely.force_2d(shapely.from_wkb(wkbs))
    xy = shapely.get_coordinates(out.geoms)
    bad = ~(np.isfinite(xy).all(axis=1) & (np.abs(xy[:, 0]) <= 180.0) & (np.abs(xy[:, 1]) <= 90.0))
    if bad.any():
        _, index = shapely.get_coordinates(out.geoms, return_index=True)
        i = int(index[np.argmax(bad)])
        lon, lat = xy[np.argmax(bad)]
        raise MapError(f"{path}: layer {name} feature {out.fids[i]}: coordinate ({lon:g}, {lat:g}) outside "
                       f"WGS-84 ranges (lon -180..180, lat -90..90)")
    if (np.abs(xy[:, 1]) > 84.0).any():
        raise MapError(f"{path}: layer {name}: latitudes beyond 84 degrees are outside UTM coverage")
    return out


def read_survey(path: Path) -> dict[str, SurveyLayer | None]:
    ds = _open(path)
    try:
        return {name: read_layer(ds, path, name) for name in LAYERS}
    finally:
        ds = None
