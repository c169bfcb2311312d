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


def _with_positions(node_xml, lon, lat):
    """Node XML with new lat/lon attributes (lxml, so everything else of each node is kept)."""
    import numpy as np
    from lxml import etree

    out = np.empty(len(node_xml), dtype=object)
    for i, (raw, lo, la) in enumerate(zip(node_xml.tolist(), lon.tolist(), lat.tolist())):
        el = etree.fromstring(raw)
        if la == la:  # NaN: a local-only node without an origin stays as it is
            el.set("lat", f"{la:.11f}")
            el.set("lon", f"{lo:.11f}")
        out[i] = etree.tostring(el, with_tail=False)
    return out


def _build_survey(path: Path, out: Path, origin: tuple[float, float] | None) -> dict:
    from lanelets.survey import build_from_survey

    return build_from_survey(path, out, origin)


BUILDERS: dict[str, Callable[[Path, Path, tuple[float, float] | None], dict]] = {
    ".osm": _build_osm,
    ".gpkg": _build_survey,
    ".geojson": _build_survey,
    ".json": _build_survey,
}


def build(path: str | os.PathLike, out: str | os.PathLike, origin: tuple[float, float] | None = None, *,
          frame: str | None = None) -> dict:
    """Build ``out`` from ``path``. ``frame`` (``NAME@EPOCH``): the source's reference frame; the map is
    written in CGCS2000, the default frame of releases (lanelets.frames)."""
    from lanelets.frames import DEFAULT_FRAME, FrameTransform, parse

    path, out = Path(path), Path(out)
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise MapError(f"{path}: unsupported input type {path.suffix!r} (use {', '.join(sorted(BUILDERS))})")
    if not path.is_file():
        raise MapError(f"{path}: no such file")
    src, epoch = parse(frame or DEFAULT_FRAME)
    if src.dynamic and epoch is None:
        raise MapError(f"--frame {frame}: a dynamic frame needs its epoch, e.g. {src.name}@2026.9")
    summary = builder(path, out, origin)
    if src.name != DEFAULT_FRAME:
        from lanelets.osm import read_osm, write_atomic

        m = read_osm(out)
        lon, lat = m.lonlat(origin)
        nlon, nlat, _ = FrameTransform(src.name, DEFAULT_FRAME)(lon, lat, None, epoch)
        m.node_xml = _with_positions(m.node_xml, nlon, nlat)
        write_atomic(out, m.xml_bytes())
        summary["frame"] = f"{src.name}@{epoch} -> {DEFAULT_FRAME}"
    return summary
