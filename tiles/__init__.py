"""Cut Lanelet2 maps into NDS.Live tiles, and keep every published release.

- :mod:`tiles.grid`: packed tile IDs, point/bbox/geometry to tiles, parents, children, neighbours.
- :func:`cut`: a map to self-contained gzip'd Lanelet2 OSM tiles.
- :func:`open_store`: the release store (content-addressed tiles, atomic publish, diff, export).
"""
from tiles.cutter import Tile, cut
from tiles.errors import StoreError, TileError
from tiles.grid import DEFAULT_LEVEL, point_to_tile, tile_bbox, tiles_for_bbox, tiles_for_geometry
from tiles.store import ReleaseStore, make_manifest, open_store, write_tile_dir

__all__ = ["Tile", "cut", "TileError", "StoreError", "DEFAULT_LEVEL", "point_to_tile", "tile_bbox",
           "tiles_for_bbox", "tiles_for_geometry", "ReleaseStore", "make_manifest", "open_store", "write_tile_dir"]
