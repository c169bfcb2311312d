"""Raster layers of a release (ground elevation, lidar intensity ...): read and written with rasterio.

Steps: bring the layer to WGS-84 (rasterio.warp), mask restricted areas (rasterio.features), replace absolute
elevation by height above the layer minimum rounded to the configured step, resample through the same
offset as the vectors, and write a cloud-optimised GeoTIFF (GDAL's COG driver).

Why the resampling is hand-written: GDAL warps through CRS transforms, and GCJ-02 (or a vendor offset) is
not a CRS. Each output pixel centre goes through the provider's *inverse* (vectorised) to the true position,
where the input is sampled bilinearly.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from desensitize.errors import DesensitizeError

ELEVATION_NAME = re.compile(r"(?i)(elev|dem|dsm|dtm|height|ground)")


def _to_wgs84(src):
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    nodata = np.nan
    arr = src.read(out_dtype="float64")  # one float64 copy; the per-band masks are bytes
    arr[src.read_masks() == 0] = np.nan
    if src.crs is None:
        raise DesensitizeError(f"{src.name}: raster has no CRS")
    if src.crs.to_epsg() == 4326:
        return arr, src.transform
    transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                                           *src.bounds)
    out = np.full((src.count, height, width), np.nan)
    for b in range(src.count):
        reproject(arr[b], out[b], src_transform=src.transform, src_crs=src.crs, src_nodata=nodata,
                  dst_transform=transform, dst_crs="EPSG:4326", dst_nodata=nodata,
                  resampling=Resampling.bilinear)
    return out, transform


def _bilinear(band: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Sample at fractional (col, row) of pixel centres; NaN outside or next to a NaN."""
    h, w = band.shape
    c = col - 0.5
    r = row - 0.5
    c0 = np.floor(c)
    r0 = np.floor(r)
    fc, fr = c - c0, r - r0
    c0 = c0.astype(np.int64)
    r0 = r0.astype(np.int64)
    inside = (c0 >= -1) & (c0 < w) & (r0 >= -1) & (r0 < h)
    ci0, ci1 = np.clip(c0, 0, w - 1), np.clip(c0 + 1, 0, w - 1)
    ri0, ri1 = np.clip(r0, 0, h - 1), np.clip(r0 + 1, 0, h - 1)
    v = (band[ri0, ci0] * (1 - fc) * (1 - fr) + band[ri0, ci1] * fc * (1 - fr)
         + band[ri1, ci0] * (1 - fc) * fr + band[ri1, ci1] * fc * fr)
    v[~inside] = np.nan
    return v


def desensitize_raster(path, provider, *, restricted=None, elevation: bool | None = None,
                       elevation_step_m: float = 1.0, align_deg: float | None = None) -> tuple[bytes, dict]:
    """(COG bytes, info for the report) of a desensitised raster layer. ``elevation=None``: decided per band
    from its description (the file name for bands without one). Elevation bands become relative (minimum = 0)
    and rounded to ``elevation_step_m``. ``align_deg`` (a tile size): the output pixels tile that grid
    exactly (pixel size adjusted to a whole number of pixels per tile, origin on a multiple of the pixel size),
    so per-tile rasters are cut without resampling again."""
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import Affine

    path = Path(path)
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise DesensitizeError(f"{path}: not a raster rasterio can read: {exc}") from None
    with src:
        descriptions = src.descriptions
        arr, transform = _to_wgs84(src)
    nb, h, w = arr.shape
    if elevation is None:
        by_file = bool(ELEVATION_NAME.search(path.stem))
        elev = np.array([bool(ELEVATION_NAME.search(d)) if d else by_file for d in descriptions], dtype=bool)
    else:
        elev = np.full(nb, bool(elevation))
    elevation = bool(elev.any())
    info = {"bands": nb, "elevation": elevation, "masked_pixels": 0}

    if restricted is not None and len(restricted.polygons):
        inside = geometry_mask([g.__geo_interface__ for g in restricted.polygons], (h, w), transform,
                               invert=True, all_touched=True)
        arr[:, inside] = np.nan
        info["masked_pixels"] = int(inside.sum())
    if elevation:
        mins = [np.nanmin(arr[b]) for b in np.flatnonzero(elev) if np.isfinite(arr[b]).any()]
        base = min(mins) if mins else 0.0
        for b in np.flatnonzero(elev):  # in place: no copy of the layer
            a = arr[b]
            a -= base
            a /= elevation_step_m
            np.round(a, out=a)
            a *= elevation_step_m
        info.update(elevation_step_m=float(elevation_step_m), elevation_datum="relative to layer minimum",
                    elevation_bands=[int(i) + 1 for i in np.flatnonzero(elev)])

    # Output grid: the offset image of the input footprint, same pixel size.
    x0, y0 = transform @ (0, 0)
    x1, y1 = transform @ (w, h)
    t = np.linspace(0, 1, 33)
    ex = np.concatenate([x0 + (x1 - x0) * t, np.full(33, x1), x0 + (x1 - x0) * t, np.full(33, x0)])
    ey = np.concatenate([np.full(33, y0), y0 + (y1 - y0) * t, np.full(33, y1), y0 + (y1 - y0) * t])
    fx, fy = provider.forward(ex, ey)
    px, py = transform.a, -transform.e
    ox0, oy1 = fx.min(), fy.max()
    if align_deg:
        px = align_deg / max(1, round(align_deg / px))
        py = align_deg / max(1, round(align_deg / py))
        ox0, oy1 = np.floor(ox0 / px) * px, np.ceil(oy1 / py) * py
    ow = int(np.ceil((fx.max() - ox0) / px))
    oh = int(np.ceil((oy1 - fy.min()) / py))
    out_transform = Affine(px, 0, ox0, 0, -py, oy1)
    inv = ~transform
    nodata = -9999.0
    out = np.empty((nb, oh, ow), dtype=np.float32)
    col_centres = np.arange(ow) + 0.5
    step = max(1, (1 << 18) // max(ow, 1))  # ~260k pixels per pass bounds the float64 temporaries
    for r0 in range(0, oh, step):
        r1 = min(oh, r0 + step)
        cols, rows = np.meshgrid(col_centres, np.arange(r0, r1) + 0.5)
        glon, glat = out_transform @ (cols.ravel(), rows.ravel())
        tlon, tlat = provider.inverse(np.asarray(glon), np.asarray(glat))
        scol, srow = inv @ (tlon, tlat)
        for b in range(nb):
            v = _bilinear(arr[b], np.asarray(scol), np.asarray(srow))
            if elev[b]:  # bilinear mixes steps: round again
                v = np.round(v / elevation_step_m) * elevation_step_m
            out[b, r0:r1] = np.where(np.isfinite(v), v, nodata).reshape(r1 - r0, ow)
    del arr  # the float64 input is not needed while GDAL writes the COG
    profile = dict(driver="GTiff", width=ow, height=oh, count=nb, dtype="float32", crs="EPSG:4326",
                   transform=out_transform, nodata=nodata)
    with MemoryFile() as mem_src, MemoryFile() as mem_dst:
        with mem_src.open(**profile) as dst:
            dst.write(out)
            for i, d in enumerate(descriptions, start=1):
                if d:
                    dst.set_band_description(i, d)
            dst.update_tags(desensitised="yes", offset_provider=provider.name)
        with mem_src.open() as tmp:
            rio_copy(tmp, mem_dst.name, driver="COG", COMPRESS="DEFLATE")
        data = mem_dst.read()
    info.update(width=ow, height=oh, offset_provider=provider.name, format="COG")
    return data, info
