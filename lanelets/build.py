"""``mapsvc build``: one entry point for every kind of input, chosen by file extension (a registry)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from lanelets.errors import MapError


def _build_osm(path: Path, out: Path, origin: tuple[float, float] | None) -> dict:
    """An existing Lanelet2 map: validated, then written back losslessly. A local-only map given an
    ``origin`` keeps its ``local_x``/``local_y`` and gets lat/lon from them (Lanelet2's UTM convention)."""
    from lanelets.osm import read_osm, write_atomic

    m = read_osm(path)
    summary = m.summary()
    if m.local_only and origin is not None:
        import numpy as np

        lon, lat = m.lonlat(origin)
        m.node_xml = np.array(
            [x.replace(b'lat=""', f'lat="{la:.11f}"'.encode(), 1).replace(b'lon=""', f'lon="{lo:.11f}"'.encode(), 1)
             for x, la, lo in zip(m.node_xml.tolist(), lat.tolist(), lon.tolist())], dtype=object)
        summary["coordinates"] = f"lat/lon computed from local_x/local_y with origin {origin[0]},{origin[1]}"
    write_atomic(out, m.xml_bytes())
    return summary


def _build_survey(path: Path, out: Path, origin: tuple[float, float] | None) -> dict:
    from lanelets.survey import build_from_survey

    return build_from_survey(path, out, origin)


BUILDERS: dict[str, Callable[[Path, Path, tuple[float, float] | None], dict]] = {
    ".osm": _build_osm,
    ".gpkg": _build_survey,
    ".geojson": _build_survey,
    ".json": _build_survey,
}


def build(path: str | os.PathLike, out: str | os.PathLike, origin: tuple[float, float] | None = None) -> dict:
    path, out = Path(path), Path(out)
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise MapError(f"{path}: unsupported input type {path.suffix!r} (use {', '.join(sorted(BUILDERS))})")
    if not path.is_file():
        raise MapError(f"{path}: no such file")
    return builder(path, out, origin)
