"""Raster layers per tile: cut a WGS-84 raster (a desensitised layer) into one cloud-optimised GeoTIFF per tile.

Each tile's raster is the source's pixels inside the tile's bbox (:func:`tiles.grid.tile_bbox`), at the source
resolution, never resampled: the tile's edges are snapped to the nearest source pixel edge, so neighbouring
tiles share their edge pixels' boundary exactly (no gap, no overlap). When the source grid is aligned to the tile
grid (``desensitize_raster(..., align_deg=tile_size_deg(level))`` does that), the bounds equal the tile bbox.
Tiles where the source has no valid pixel are left out. Reading and writing go through rasterio (GDAL's COG
driver for the output).
"""
from __future__ import annotations

import os
import re

import numpy as np

from tiles.errors import TileError
from tiles.grid import tile_bbox, tile_level

LAYER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
COG_OPTIONS = {"COMPRESS": "DEFLATE", "BLOCKSIZE": "256"}  # per-tile rasters are small: 256 px blocks


def check_layer_name(name: str, where: str = "raster layer") -> str:
    if not isinstance(name, str) or not LAYER_NAME.fullmatch(name):
        raise TileError(f"{where}: layer name {str(name)[:80]!r} must be 1-64 letters, digits, '_' or '-'")
    return name


def write_cog(data: np.ndarray, transform, *, crs="EPSG:4326", nodata=None, descriptions=(), tags=None,
              options=None) -> bytes:
    """A (bands, rows, cols) array as COG bytes (GTiff in memory, then GDAL's COG driver: it has no Create)."""
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy

    nb, h, w = data.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": nb, "dtype": data.dtype.name, "crs": crs,
               "transform": transform, "nodata": nodata}
    with MemoryFile() as mem_src, MemoryFile() as mem_dst:
        with mem_src.open(**profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions or (), start=1):
                if d:
                    dst.set_band_description(i, d)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
        with mem_src.open() as tmp:
            rio_copy(tmp, mem_dst.name, driver="COG", **(options or COG_OPTIONS))
        return mem_dst.read()


def _open(src):
    import rasterio
    from rasterio.io import MemoryFile

    if isinstance(src, (bytes, bytearray, memoryview)):
        mem = MemoryFile(bytes(src))
        return mem, mem.open()
    try:
        return None, rasterio.open(os.fspath(src))
    except rasterio.errors.RasterioIOError as exc:
        raise TileError(f"{src}: not a raster rasterio can read: {exc}") from None


def tile_window(transform, bbox, width: int, height: int):
    """(full window, part inside the source) of a tile bbox, edges snapped to the nearest source pixel edge."""
    from rasterio.windows import Window

    inv = ~transform
    c0, r0 = inv @ (bbox[0], bbox[3])
    c1, r1 = inv @ (bbox[2], bbox[1])
    c0, c1 = sorted((round(c0), round(c1)))
    r0, r1 = sorted((round(r0), round(r1)))
    full = Window(c0, r0, c1 - c0, r1 - r0)
    ic0, ir0 = max(c0, 0), max(r0, 0)
    ic1, ir1 = min(c1, width), min(r1, height)
    if ic1 <= ic0 or ir1 <= ir0:
        return full, None
    return full, Window(ic0, ir0, ic1 - ic0, ir1 - ir0)


def cut_raster(src, tile_ids, level: int | None = None) -> dict[int, bytes]:
    """{tile id: COG bytes} of a WGS-84 raster (COG bytes or a path) cut to each tile that holds valid data."""
    mem, ds = _open(src)
    try:
        if ds.crs is None or ds.crs.to_epsg() != 4326:
            raise TileError(f"{ds.name}: raster must be in EPSG:4326 to be cut into tiles (is {ds.crs})")
        if abs(ds.transform.b) > 0 or abs(ds.transform.d) > 0:
            raise TileError(f"{ds.name}: rotated rasters cannot be cut into tiles")
        ids = np.asarray(list(tile_ids), dtype=np.int64)
        if level is not None and len(ids) and np.any(tile_level(ids) != level):
            raise TileError(f"{ds.name}: tile ids are not all at level {level}")
        nodata = ds.nodata
        fill = nodata if nodata is not None else 0
        tags = ds.tags()
        out = {}
        for tid in ids.tolist():
            full, inner = tile_window(ds.transform, tile_bbox(tid), ds.width, ds.height)
            if inner is None:
                continue
            part = ds.read(window=inner, masked=True)
            if np.ma.getmaskarray(part).all():
                continue  # nothing to localise against in this tile
            data = np.full((ds.count, full.height, full.width), fill, dtype=part.dtype)
            r, c = inner.row_off - full.row_off, inner.col_off - full.col_off
            data[:, r:r + inner.height, c:c + inner.width] = part.filled(fill)
            out[tid] = write_cog(data, ds.window_transform(full), nodata=nodata, descriptions=ds.descriptions,
                                 tags={**tags, "tile_id": tid, "tile_level": int(tile_level(np.int64(tid)))})
        return out
    finally:
        ds.close()
        if mem is not None:
            mem.close()
