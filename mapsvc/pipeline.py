"""Wiring of the map pipeline: read -> cut -> manifest -> store. No domain logic of its own."""
from __future__ import annotations

import hashlib
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from lanelets.files import file_sha256
from lanelets.osm import read_osm
from tiles import cut, make_manifest, open_store, write_tile_dir
from tiles.errors import TileError
from tiles.grid import DEFAULT_LEVEL, tile_size_deg
from tiles.raster import check_layer_name, cut_raster
from tiles.signing import release_signature
from tiles.store import DESENSITISATION, check_release_name, raster_attachment, raster_path

from mapsvc import __version__

log = logging.getLogger(__name__)


@contextmanager
def progress(desc: str, total: int):
    """A tqdm bar on a terminal; nothing in pipes and logs."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="tile", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def tile_map(path, level: int = DEFAULT_LEVEL, origin=None, *, release: str | None = None):
    """Read and cut a map; returns (tiles, manifest). Nothing is written."""
    path = Path(path)
    m = read_osm(path)
    with progress("tiling", 0) as tick:
        tiles = cut(m, level, origin, progress=tick)
    summary = m.summary()
    summary.pop("source", None)
    meta = {
        "generator": f"mapsvc {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {"file": path.name, "sha256": file_sha256(path), "summary": summary},
        "origin": list(origin) if origin else None,
    }
    if release:
        meta["release"] = release
    return tiles, make_manifest(tiles, level, **meta)


def tile_to_dir(path, out, level: int = DEFAULT_LEVEL, origin=None) -> dict:
    tiles, manifest = tile_map(path, level, origin)
    write_tile_dir(out, manifest, {t.sha256: t.data for t in tiles})
    return manifest


def publish(path, release: str, store_url, level: int = DEFAULT_LEVEL, origin=None, *, restricted_areas=None,
            profile: str | None = None, offset_provider: str | None = None, rules=None, rasters=(),
            frame: str | None = None) -> dict:
    """Desensitise, tile, scan and store a release. There is no way around the desensitisation step: the
    raw map never reaches the store, only its desensitised tiles, the report (manifest) and the audit
    (restricted attachment). ``frame``: the source's reference frame (``NAME`` or ``NAME@EPOCH``, default
    CGCS2000), declared in the signed manifest with the offset provider applied."""
    from lanelets.frames import declaration
    from desensitize import desensitize, desensitize_raster, load_settings
    from desensitize.scan import require_clean
    from mapsvc.config import home

    check_release_name(release)  # before any work
    store = open_store(store_url)
    if any(r.name == release for r in store.releases()):
        from tiles import StoreError

        raise StoreError(f"release {release!r} already exists; releases are immutable")
    path = Path(path)
    declaration(frame)  # a bad frame fails before any work is done
    layers = {}  # raster layers are named after their files; checked before any work is done
    for raster in rasters:
        layer = check_layer_name(Path(raster).stem, str(raster))
        if layer in layers:
            raise TileError(f"{raster}: raster layer {layer!r} is already given by {layers[layer]}")
        layers[layer] = raster
    settings = load_settings(home(), profile=profile, offset_provider=offset_provider, rules=rules)
    result = desensitize(read_osm(path), settings=settings, restricted=restricted_areas, origin=origin)
    out = result.map
    with progress("tiling", 0) as tick:
        tiles = cut(out, level, None, progress=tick)
    require_clean(tiles, result.rules, expected_nodes=(out.node_id, out.node_lon, out.node_lat),
                  provider=result.provider, restricted=result.restricted)
    attachments = {"audit.json": (result.audit.to_json(release=release, source=path.name,
                                                       profile=settings.profile), True)}
    tile_rasters: dict[int, dict] = {}
    for layer, raster in layers.items():
        # aligned to the tile grid, so cutting per tile does not resample a second time
        cog, info = desensitize_raster(raster, result.provider, restricted=result.restricted,
                                       align_deg=tile_size_deg(level))
        key = f"raster/{layer}.tif"
        attachments[key] = (cog, False)
        per_tile = cut_raster(cog, [t.id for t in tiles], level)
        for tid, data in per_tile.items():
            attachments[raster_attachment(layer, tid)] = (data, False)
            tile_rasters.setdefault(tid, {})[layer] = {"sha256": hashlib.sha256(data).hexdigest(),
                                                       "bytes": len(data), "path": raster_path(layer, tid)}
        result.report.setdefault("rasters", []).append({"attachment": key, "layer": layer,
                                                        "tiles": len(per_tile), **info})
    summary = out.summary()
    summary.pop("source", None)
    manifest = make_manifest(
        tiles, level, generator=f"mapsvc {__version__}",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        source={"file": path.name, "sha256": file_sha256(path), "summary": summary},
        origin=None,  # a local map's origin is a true position: it stays with the producer
        release=release, **{DESENSITISATION: result.report},
        frame=declaration(frame, offset=result.provider.describe()))
    for entry in manifest["tiles"]:  # listed before signing: the signature covers every raster's sha256
        if entry["id"] in tile_rasters:
            entry["rasters"] = tile_rasters[entry["id"]]
    with progress("publishing", len(tiles)) as tick:
        # manifest.sig is signed over the exact manifest bytes and stored in the same transaction (tiles.signing)
        stored = store.publish(release, tiles, manifest, progress=tick,
                               attachments={**release_signature(manifest, home()), **attachments})
    warm_console_map(store, release)
    return stored


def warm_console_map(store, release: str) -> None:
    """Convert the release's tiles for the console's map now, so its first view converts nothing. Only a
    cache: the release is already published, and a failure here costs a slower first view, not the release."""
    from tiles.geojson import GeoJSONCache

    directory = store.derived_dir("geojson")
    if directory is None:
        return
    try:
        with progress("console map", len(store.manifest(release)["tiles"])) as tick:
            GeoJSONCache(directory, memory_mb=0).warm(store, release, progress=tick)
    except (OSError, TileError) as exc:
        log.warning("release %s: console map not prepared (%s); tiles convert on first view", release, exc)
