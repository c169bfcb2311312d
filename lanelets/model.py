"""Lanelet2 as the map model: load any real ``.osm`` into a ``lanelet2.core.LaneletMap``.

Maps with regulatory elements Lanelet2 does not know make a strict ``io.load`` raise, so loading is robust and
the errors are returned (they are the elements kept verbatim by :mod:`lanelets.osm`). Local-only maps (empty
lat/lon) get their x/y from ``local_x``/``local_y`` as Autoware's local projector does.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
import tempfile
from pathlib import Path

import lanelet2
from lanelet2.io import Origin
from lanelet2.projection import UtmProjector

from lanelets.osm import OsmMap, read_osm


def default_origin(m: OsmMap) -> tuple[float, float]:
    """The map's first georeferenced point (Lanelet2 only needs an origin near the map), else (0, 0)."""
    import numpy as np

    ok = ~np.isnan(m.node_lat)
    if not ok.any():
        return (0.0, 0.0)
    i = int(np.flatnonzero(ok)[0])
    return (float(m.node_lat[i]), float(m.node_lon[i]))


@contextmanager
def lanelet2_path(m: OsmMap):
    """A file holding ``m`` for Lanelet2's loader, which reads only paths (pugixml ``load_file``): the one
    place in the project that writes a map to a temporary file to have it read again."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map.osm"
        path.write_bytes(m.xml_bytes())
        yield str(path)


def load_lanelet2(path_or_map, origin: tuple[float, float] | None = None):
    """(LaneletMap, projector, errors) for a path, bytes, a file object or an :class:`OsmMap`."""
    m = path_or_map if isinstance(path_or_map, OsmMap) else read_osm(path_or_map)
    origin = origin or default_origin(m)
    projector = UtmProjector(Origin(*origin))
    with lanelet2_path(m) as path:
        lmap, errors = lanelet2.io.loadRobust(path, projector)
    if m.local_only:
        for p in lmap.pointLayer:
            a = p.attributes
            if "local_x" in a and "local_y" in a:
                p.x, p.y = float(a["local_x"]), float(a["local_y"])
    return lmap, projector, list(errors)
