"""Where an offset applies ("inside China"): a box or a polygon layer, chosen in configuration.

The common boxes (regulations.md §4.2) take in Korea, Mongolia, Taiwan, Hong Kong and Macau; the default is
the 70-vertex outline shipped in ``data/gcj02_region.geojson`` (PRCoords, CC0). Any polygon layer GDAL reads
can replace it (``region: path/to/layer.gpkg``).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely

from desensitize.errors import DesensitizeError

DATA = Path(__file__).resolve().parent / "data"
BOXES = {
    # lon_min, lat_min, lon_max, lat_max (inclusive), from the libraries named in regulations.md §4.2
    "box-gcoord": (72.004, 0.8293, 137.8347, 55.8271),
    "box-wandergis": (73.66, 3.86, 135.05, 53.55),
}
DEFAULT = "polygon"


class Region:
    def contains(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class BoxRegion(Region):
    def __init__(self, name: str, box):
        self.name, self.box = name, tuple(float(v) for v in box)

    def contains(self, lon, lat):
        x0, y0, x1, y1 = self.box
        return (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)

    def describe(self) -> str:
        return f"{self.name} {list(self.box)}"


class PolygonRegion(Region):
    """Point-in-polygon for millions of points: a coarse grid of cells classified once (inside / outside /
    on the edge) answers most points by lookup; only edge cells get shapely's exact test."""

    CELL = 0.25  # degrees

    def __init__(self, name: str, geometry):
        self.name = name
        self.geometry = geometry
        shapely.prepare(self.geometry)
        x0, y0, x1, y1 = shapely.bounds(self.geometry)
        self.x0, self.y0 = np.floor(x0), np.floor(y0)
        nx = int(np.ceil((x1 - self.x0) / self.CELL)) + 1
        ny = int(np.ceil((y1 - self.y0) / self.CELL)) + 1
        gx, gy = np.meshgrid(self.x0 + np.arange(nx) * self.CELL, self.y0 + np.arange(ny) * self.CELL)
        cells = shapely.box(gx, gy, gx + self.CELL, gy + self.CELL)
        # 1 inside, 0 outside, 2 edge (exact test needed)
        state = np.full(cells.shape, 2, np.int8)
        state[shapely.contains_properly(self.geometry, cells)] = 1
        state[shapely.disjoint(self.geometry, cells)] = 0
        self.state = state

    def contains(self, lon, lat):
        lon = np.asarray(lon, np.float64)
        lat = np.asarray(lat, np.float64)
        # Clipping far-away points onto the grid's border is safe: border cells reach outside the polygon's
        # bounds, so they are never "inside" and far points get the exact test or "outside".
        ny, nx = self.state.shape
        ix = (lon - self.x0) * (1.0 / self.CELL)
        np.fmax(np.fmin(ix, nx - 1, out=ix), 0, out=ix)  # fmin/fmax also send NaN to a border cell
        iy = (lat - self.y0) * (1.0 / self.CELL)
        np.fmax(np.fmin(iy, ny - 1, out=iy), 0, out=iy)
        flat = iy.astype(np.intp)
        flat *= nx
        flat += ix.astype(np.intp)
        state = self.state.ravel().take(flat)
        out = state == 1
        edge = state == 2
        if edge.any():
            out[edge] = shapely.contains_xy(self.geometry, lon[edge], lat[edge])
        return out

    def describe(self) -> str:
        return f"polygon {self.name}"


def read_polygons(path: str | Path):
    """All polygons of every layer of a GDAL-readable vector file, in WGS-84 lon/lat (shapely array) and
    their feature labels. Raises DesensitizeError naming the file on anything unreadable."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    osr.UseExceptions()
    path = Path(path)
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise DesensitizeError(f"{path}: not a vector file GDAL can read: {str(exc).strip()}") from None
    if ds is None:
        raise DesensitizeError(f"{path}: not a vector file GDAL can read")
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geoms, labels = [], []
    for layer in ds:
        srs = layer.GetSpatialRef()
        transform = None
        if srs is not None and not srs.IsSame(wgs84):
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            transform = osr.CoordinateTransformation(srs, wgs84)
        for feature in layer:
            g = feature.GetGeometryRef()
            if g is None:
                continue
            g = g.Clone()
            if transform is not None:
                g.Transform(transform)
            shape = shapely.from_wkb(bytes(g.ExportToIsoWkb()))
            if shapely.get_type_id(shape) not in (3, 6):  # Polygon, MultiPolygon
                raise DesensitizeError(
                    f"{path}: layer {layer.GetName()!r} feature {feature.GetFID()} is a "
                    f"{shape.geom_type}, expected polygons")
            geoms.append(shapely.make_valid(shape))
            labels.append(f"{layer.GetName()}:{feature.GetFID()}")
    if not geoms:
        raise DesensitizeError(f"{path}: no polygons found")
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    return arr, labels


@lru_cache(maxsize=8)
def _polygon_region(path: str) -> PolygonRegion:
    geoms, _ = read_polygons(path)
    return PolygonRegion(Path(path).name, shapely.union_all(geoms))


def region_from_config(value=None) -> Region:
    """``None``/"polygon" -> shipped outline; "box-gcoord"/"box-wandergis"; a list of 4 numbers (a box);
    or a path to any GDAL polygon layer."""
    if value is None or value == DEFAULT:
        return _polygon_region(str(DATA / "gcj02_region.geojson"))
    if isinstance(value, str) and value in BOXES:
        return BoxRegion(value, BOXES[value])
    if isinstance(value, (list, tuple)) and len(value) == 4:
        return BoxRegion("box", value)
    if isinstance(value, (str, Path)) and Path(value).exists():
        return _polygon_region(str(Path(value).resolve()))
    raise DesensitizeError(f"offset region {value!r}: expected 'polygon', {', '.join(BOXES)}, a box "
                           "[lon_min, lat_min, lon_max, lat_max] or a polygon file")
