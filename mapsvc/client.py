"""The vehicle client: fetch the tiles around a position, verify them, keep a local cache, update incrementally.

Trust comes from a pinned Ed25519 public key only: the manifest must carry a valid signature by that key (and
name the release asked for), and every tile must hash to the sha256 the signed manifest gives it. Nothing the
server says outside the signed manifest (area lists, deltas, ETags) is trusted without that cross-check.
A tile or manifest that fails is rejected with :class:`VerificationError` and never written to the cache.

Cache layout (``cache_dir``)::

    state.json                 server, pinned key, current release, area, tile ids -> sha256
    manifests/<release>.json   verified manifest bytes (+ .sig)
    tiles/<sha256>.osm.gz      verified tiles, content-addressed (an unchanged tile is kept across releases)
    rasters/<sha256>.tif       verified per-tile raster layers (``layers=``), content-addressed the same way
    merged.osm                 the merged Lanelet2 map of the current area (written by :meth:`lanelet_map`)

Updates: the new release's signed manifest (conditional GET when the release is the cached one), then
``/delta?from=<cached release>`` says which tiles changed; only those, and tiles new to the area, are
downloaded. Without a usable delta, cached tiles are revalidated with conditional GETs (``If-None-Match``).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from tiles import signing
from tiles.store import RELEASE_NAME
from tiles.view import ReleaseView


class FetchError(Exception):
    """The server or the cache cannot give what was asked (one line, names the problem)."""


class VerificationError(FetchError):
    """A manifest or tile failed signature / hash verification: rejected, not cached."""


@dataclass
class FetchResult:
    release: str
    tiles: list[int]                      # tile ids covering the area
    downloaded: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)        # already in the cache, not requested
    removed: list[int] = field(default_factory=list)       # left the area or the release
    bytes_downloaded: int = 0
    manifest_not_modified: bool = False
    used_delta: bool = False
    rasters: dict = field(default_factory=dict)          # layer -> tile ids of the area that have it
    rasters_downloaded: int = 0                          # raster files fetched (the rest came from the cache)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class VehicleClient:
    def __init__(self, server: str, token: str, cache_dir: str | os.PathLike, *,
                 public_key: bytes | str | os.PathLike | None = None, key_id: str | None = None,
                 timeout: float = 15.0, session: requests.Session | None = None):
        self.server = server.rstrip("/")
        self.cache = Path(cache_dir)
        self.timeout = timeout
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.http.headers["Accept-Encoding"] = "identity"  # tiles are gzip files, not gzip transfer encoding
        self._pin_source = (public_key, key_id)
        self._lanelet = None

    # -- state ----------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.cache / "state.json"

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise FetchError(f"{self.state_path}: cache state is corrupt; remove the cache directory") from None

    def tile_path(self, sha: str) -> Path:
        return self.cache / "tiles" / f"{sha}.osm.gz"

    def raster_file(self, sha: str) -> Path:
        return self.cache / "rasters" / f"{sha}.tif"

    def raster_path(self, layer: str, tile_id: int) -> Path | None:
        """The cached raster of a fetched tile's layer, or None when the tile has no such layer."""
        sha = self.state().get("rasters", {}).get(layer, {}).get(str(int(tile_id)))
        return self.raster_file(sha) if sha else None

    def _cached_tile(self, sha: str, path: Path | None = None) -> bool:
        """A cached tile counts only if it still hashes right (a damaged cache file is dropped and refetched)."""
        path = path or self.tile_path(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        if hashlib.sha256(data).hexdigest() == sha:
            return True
        path.unlink(missing_ok=True)
        return False

    # -- HTTP -----------------------------------------------------------------------------------------
    def _get(self, path: str, *, params=None, headers=None, ok=(200,)) -> requests.Response:
        url = f"{self.server}{path}"
        try:
            resp = self.http.get(url, params=params, headers=headers, timeout=self.timeout, allow_redirects=True)
        except requests.RequestException as exc:
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None
        if resp.status_code not in ok:
            detail = ""
            if resp.headers.get("Content-Type", "").startswith("application/problem+json"):
                try:
                    detail = ": " + resp.json().get("detail", "")
                except ValueError:
                    pass
            raise FetchError(f"GET {path}: HTTP {resp.status_code}{detail}")
        return resp

    # -- trust ----------------------------------------------------------------------------------------
    def _pinned_key(self, state: dict):
        public_key, key_id = self._pin_source
        if public_key is not None:
            data = public_key if isinstance(public_key, bytes) else Path(public_key).read_bytes()
            key = signing.load_public_key(data)
            if key_id and signing.key_id_of(key) != key_id:
                raise VerificationError(f"pinned key file has id {signing.key_id_of(key)}, not {key_id}")
            return key
        if key_id:
            for entry in self._get("/v1/keys").json().get("keys", []):
                if entry.get("key_id") == key_id:
                    key = signing.load_public_key(entry["public_key"].encode())
                    # the id is the key's fingerprint: a server cannot substitute another key under this id
                    if signing.key_id_of(key) != key_id:
                        raise VerificationError(f"server's key {key_id} does not hash to its id: rejected")
                    return key
            raise FetchError(f"server has no public key with id {key_id}")
        if state.get("public_key"):
            return signing.load_public_key(state["public_key"].encode())
        raise FetchError("no pinned public key: give --pubkey FILE or --key-id ID on the first fetch")

    def _manifest(self, release: str, state: dict, key) -> tuple[bytes, dict, bool, bytes]:
        """Verified manifest bytes of a release (conditional GET when it is the cached one)."""
        cached = self.cache / "manifests" / f"{release}.json"
        headers = {}
        if state.get("release") == release and state.get("manifest_sha256") and cached.exists():
            headers["If-None-Match"] = f'"{state["manifest_sha256"]}"'
        resp = self._get(f"/v1/releases/{release}", headers=headers, ok=(200, 304))
        not_modified = resp.status_code == 304
        raw = cached.read_bytes() if not_modified else resp.content
        sig = self._get(f"/v1/releases/{release}/manifest.sig").content
        try:
            signing.verify_bytes(raw, sig, key)
        except signing.SignatureError as exc:
            raise VerificationError(f"release {release}: {exc}; manifest rejected") from None
        manifest = json.loads(raw)
        if manifest.get("release", release) != release:
            raise VerificationError(f"release {release}: the signed manifest is release {manifest['release']!r} "
                                    "(replayed manifest); rejected")
        return raw, manifest, not_modified, sig

    # -- fetch ----------------------------------------------------------------------------------------
    def fetch(self, lat: float, lon: float, radius_m: float, release: str | None = None,
              layers=()) -> FetchResult:
        """Fetch the tiles around a position; ``layers``: also each tile's raster layers of those names."""
        from tiles.raster import LAYER_NAME

        layers = list(dict.fromkeys(layers or ()))
        for layer in layers:  # a URL path segment
            if not isinstance(layer, str) or not LAYER_NAME.fullmatch(layer):
                raise FetchError(f"not a raster layer name: {str(layer)[:80]!r}")
        state = self.state()
        if state.get("server") not in (None, self.server):
            raise FetchError(f"{self.cache} caches {state['server']}, not {self.server}; use another --cache")
        key = self._pinned_key(state)
        asked_latest = release is None
        if asked_latest:
            release = self._get("/v1/releases/latest").json().get("name")
        # the name becomes a URL path segment and a cache file name: nothing but a release name passes
        if not isinstance(release, str) or not RELEASE_NAME.fullmatch(release):
            raise FetchError(f"not a release name: {str(release)[:80]!r}")
        raw, manifest, manifest_304, sig = self._manifest(release, state, key)
        if asked_latest and state.get("release") not in (None, release):
            old = self.cache / "manifests" / f"{state['release']}.json"
            old_created = json.loads(old.read_bytes()).get("created", "") if old.exists() else ""
            if manifest.get("created", "") < old_created:
                raise VerificationError(f"latest release {release} is older than the cached {state['release']} "
                                        "(rollback); rejected")
        view = ReleaseView.of(release, raw)
        signed = dict(zip(view.ids.tolist(), view.sha, strict=True))

        listed = self._get(f"/v1/releases/{release}/tiles",
                           params={"lat": repr(float(lat)), "lon": repr(float(lon)), "radius_m": repr(float(radius_m))}
                           ).json()["tiles"]
        area = {int(t["id"]): t["sha256"] for t in listed}
        expected = {int(view.ids[i]) for i in view.in_circle(lat, lon, radius_m)}
        if set(area) != expected or any(signed.get(i) != s for i, s in area.items()):
            raise VerificationError(f"release {release}: the server's tile list for the area disagrees with the "
                                    "signed manifest; rejected")

        result = FetchResult(release, sorted(area), manifest_not_modified=manifest_304)
        old_tiles = {int(k): v for k, v in state.get("tiles", {}).items()}
        self._changed_since(state, release, signed, result)

        for tid in sorted(area):
            sha = area[tid]
            if self._cached_tile(sha):  # content-addressed: an unchanged tile is never requested again
                result.reused.append(tid)
                continue
            headers = {}
            if tid in old_tiles and old_tiles[tid] != sha:
                # conditional GET on the copy we hold: a 304 here would contradict the signed manifest
                headers["If-None-Match"] = f'"{old_tiles[tid]}"'
            resp = self._get(f"/v1/releases/{release}/tiles/{tid}", headers=headers, ok=(200, 304))
            if resp.status_code == 304:
                raise VerificationError(f"tile {tid} of release {release}: server says unchanged, the signed "
                                        "manifest says changed; rejected")
            self._accept_tile(release, tid, sha, resp.content, result)

        rasters = self._fetch_rasters(release, manifest, sorted(area), layers, result)

        result.removed = sorted(set(old_tiles) - set(area))
        # every check passed: now (and only now) the manifest and the state enter the cache
        _write_atomic(self.cache / "manifests" / f"{release}.json", raw)
        _write_atomic(self.cache / "manifests" / f"{release}.sig", sig)
        pin = signing.PublicKey(signing.key_id_of(key), key, "")
        new_state = {"server": self.server, "key_id": pin.key_id, "public_key": pin.as_dict()["public_key"],
                     "release": release, "manifest_sha256": view.sha256, "level": view.level,
                     "origin": manifest.get("origin"),
                     "area": {"lat": lat, "lon": lon, "radius_m": radius_m},
                     "tiles": {str(k): v for k, v in sorted(area.items())}, "rasters": rasters}
        _write_atomic(self.state_path, json.dumps(new_state, indent=1).encode())
        self._lanelet = None
        return result

    def _fetch_rasters(self, release: str, manifest: dict, tile_ids: list[int], layers: list[str],
                       result: FetchResult) -> dict:
        """Download (or reuse) the raster layers the signed manifest lists for the tiles; {layer: {id: sha}}."""
        listed = {int(t["id"]): t.get("rasters") or {} for t in manifest["tiles"]}
        out: dict[str, dict[str, str]] = {}
        for layer in layers:
            out[layer] = {}
            for tid in tile_ids:
                entry = listed.get(tid, {}).get(layer)
                if entry is None:
                    continue  # no data of this layer in this tile
                sha = entry["sha256"]
                if not self._cached_tile(sha, self.raster_file(sha)):
                    data = self._get(f"/v1/releases/{release}/tiles/{tid}/rasters/{layer}").content
                    got = hashlib.sha256(data).hexdigest()
                    if got != sha:
                        raise VerificationError(f"raster {layer} of tile {tid} of release {release}: sha256 "
                                                f"{got[:16]}... differs from the signed manifest's {sha[:16]}...; "
                                                "rejected, not cached")
                    _write_atomic(self.raster_file(sha), data)
                    result.rasters_downloaded += 1
                    result.bytes_downloaded += len(data)
                out[layer][str(tid)] = sha
            result.rasters[layer] = [int(t) for t in out[layer]]
        return out

    def _changed_since(self, state: dict, release: str, signed: dict, result: FetchResult) -> set[int] | None:
        """Tile ids added or changed since the cached release, from /delta (cross-checked with the signed
        manifest). None when there is no cached release or the server cannot give a delta."""
        prev = state.get("release")
        if not prev or prev == release:
            return set() if prev == release else None
        try:
            d = self._get(f"/v1/releases/{release}/delta", params={"from": prev}).json()
        except FetchError:
            return None
        changed = {int(e["id"]): e["sha256"] for e in d["added"] + d["changed"]}
        if any(signed.get(i) != s for i, s in changed.items()):
            raise VerificationError(f"release {release}: delta from {prev} disagrees with the signed manifest")
        result.used_delta = True
        return set(changed)

    def _accept_tile(self, release: str, tid: int, sha: str, data: bytes, result: FetchResult) -> None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha:
            raise VerificationError(f"tile {tid} of release {release}: sha256 {got[:16]}... differs from the signed "
                                    f"manifest's {sha[:16]}...; tile rejected, not cached")
        _write_atomic(self.tile_path(sha), data)
        result.downloaded.append(tid)
        result.bytes_downloaded += len(data)

    # -- the map --------------------------------------------------------------------------------------
    def merged_osm(self) -> Path:
        """Write the cached area's tiles merged by element id (they overlap at tile edges) to merged.osm."""
        from lanelets.osm import merge, read_osm

        state = self.state()
        if not state.get("tiles"):
            raise FetchError(f"{self.cache}: nothing fetched yet")
        maps = []
        for tid, sha in state["tiles"].items():
            if not self._cached_tile(sha):
                raise FetchError(f"{self.cache}: tile {tid} is missing or damaged; fetch again")
            maps.append(read_osm(self.tile_path(sha).read_bytes(), name=f"tile {tid}"))
        merged = merge(maps, name=str(self.cache / "merged.osm"))  # tiles copy elements verbatim: any copy will do
        out = self.cache / "merged.osm"
        _write_atomic(out, merged.xml_bytes())
        return out

    def lanelet_map(self):
        """(lanelet2 LaneletMap, projector) of the fetched area, loaded robustly with a UtmProjector."""
        if self._lanelet is None:
            from lanelets.model import load_lanelet2

            origin = self.state().get("origin")
            lmap, projector, _errors = load_lanelet2(self.merged_osm(), tuple(origin) if origin else None)
            self._lanelet = (lmap, projector)
        return self._lanelet

    def match(self, lat: float, lon: float, max_dist: float = 1.0) -> list[tuple[int, float]]:
        """Lanelets under a WGS-84 position, nearest first: [(lanelet id, distance m)] (lanelet2.matching)."""
        from lanelet2.core import GPSPoint

        lmap, projector = self.lanelet_map()
        p = projector.forward(GPSPoint(lat, lon, 0.0))
        return self.match_xy(p.x, p.y, max_dist)

    def match_xy(self, x: float, y: float, max_dist: float = 1.0) -> list[tuple[int, float]]:
        """The same in the map's metric frame (for local-only maps, whose points carry local_x/local_y)."""
        from lanelet2.matching import Object2d, Pose2d, getDeterministicMatches

        lmap, _ = self.lanelet_map()
        obj = Object2d()
        obj.pose = Pose2d(x, y, 0.0)
        best: dict[int, float] = {}
        for m in getDeterministicMatches(lmap, obj, max_dist):
            best[m.lanelet.id] = min(m.distance, best.get(m.lanelet.id, np.inf))  # a lanelet and its inverse
        return sorted(best.items(), key=lambda kv: (kv[1], kv[0]))
