"""What the checks share: one map read once, turned into arrays once (positions in metres, tags, lanelet
bounds), plus Lanelet2's own model and routing graph built lazily for the checks that need them.
"""
from __future__ import annotations

from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np
import yaml

from lanelets.osm import OsmMap

CONFIG_DIR = Path(__file__).with_name("config")


def load_config(name: str) -> dict:
    with open(CONFIG_DIR / name, encoding="utf-8") as f:
        return yaml.safe_load(f)




class Context:
    def __init__(self, m: OsmMap, *, origin=None, reference: OsmMap | None = None, checkpoints=None,
                 metadata: dict | None = None, release: dict | None = None, grading: dict | None = None,
                 rules: dict | None = None, schema: dict | None = None):
        self.m = m
        self._origin = origin
        self.reference = reference
        self.checkpoints = checkpoints
        self.metadata = metadata or {}
        self.release = release  # {"store": ReleaseStore, "name": str, "manifest": dict, "home": Path}
        self.grading = grading or load_config("grading.yaml")
        self.rules = rules or load_config("rules.yaml")
        self.schema = schema or load_config("lanelet2_schema.yaml")

    # -- what is available -------------------------------------------------------------------------------
    def has(self, need: str) -> bool:
        return {"reference": self.reference is not None, "checkpoints": self.checkpoints is not None,
                "release": self.release is not None, "lanelet2": True}.get(need, False)

    # -- positions -----------------------------------------------------------------------------------------
    @cached_property
    def origin(self) -> tuple[float, float]:
        from lanelets.model import default_origin

        return tuple(self._origin) if self._origin else default_origin(self.m)

    @cached_property
    def georeferenced(self) -> bool:
        return not self.m.local_only

    @cached_property
    def xy(self) -> np.ndarray:
        """Point positions in metres, in Lanelet2's UtmProjector frame at the origin (Autoware's local_x/y)."""
        m = self.m
        if m.local_only:
            return np.column_stack([m.node_local_x, m.node_local_y])
        from lanelets.projection import lonlat_to_local

        lon, lat = m.lonlat(self.origin)
        x, y = lonlat_to_local(lon, lat, *self.origin)
        return np.column_stack([np.asarray(x, float), np.asarray(y, float)])

    @cached_property
    def z(self) -> np.ndarray:
        rows, keys, values = self.node_tags
        z = np.zeros(self.m.n_nodes)
        sel = keys == "ele"
        if sel.any():
            z[rows[sel]] = _to_float(values[sel])
        return np.nan_to_num(z)

    def to_lonlat(self, x: np.ndarray, y: np.ndarray):
        from lanelets.projection import local_to_lonlat

        return local_to_lonlat(x, y, *self.origin)

    # -- tags ----------------------------------------------------------------------------------------------
    @cached_property
    def node_tags(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(node row, key, value) of every node tag, flattened from what the reader collected (no Python loop
        per point: the chains run in C)."""
        tags = self.m.node_tags
        counts = np.fromiter(map(len, tags), dtype=np.int64, count=len(tags))
        rows = np.repeat(np.arange(len(tags), dtype=np.int64), counts)
        keys = _obj(list(chain.from_iterable(tags)))
        values = _obj(list(chain.from_iterable(map(dict.values, tags))))
        return rows, keys, values

    @cached_property
    def way_is_polygon(self) -> np.ndarray:
        return np.array([t.get("area") == "yes" for t in self.m.way_tags], dtype=bool)

    @cached_property
    def rel_type(self) -> np.ndarray:
        return self.m.relation_types()

    @cached_property
    def rel_subtype(self) -> np.ndarray:
        return _obj([t.get("subtype", "") for t in self.m.rel_tags])

    @cached_property
    def way_type(self) -> np.ndarray:
        return _obj([t.get("type", "") for t in self.m.way_tags])

    @cached_property
    def member_role(self) -> np.ndarray:
        return _obj(self.m.rel_member_role)

    @cached_property
    def member_owner(self) -> np.ndarray:
        return self.m.relation_of_member()

    # -- line strings --------------------------------------------------------------------------------------
    @cached_property
    def way_xy(self) -> np.ndarray:
        """Positions of every entry of ``way_nodes`` (CSR by ``way_ptr``); NaN for a missing point."""
        rows = self.m.way_nodes
        out = np.full((len(rows), 2), np.nan)
        ok = rows >= 0
        out[ok] = self.xy[rows[ok]]
        return out

    @cached_property
    def way_centroid(self) -> np.ndarray:
        ptr = self.m.way_ptr
        n = np.diff(ptr)
        out = np.full((self.m.n_ways, 2), np.nan)
        nz = n > 0
        if nz.any():
            xy = np.nan_to_num(self.way_xy)
            sums = np.add.reduceat(xy, ptr[:-1][nz], axis=0)
            out[nz] = sums / n[nz, None]
        return out

    @cached_property
    def way_geoms(self) -> np.ndarray:
        """shapely LineStrings of all ways with >= 2 usable points (None otherwise), built in one call."""
        import shapely

        xy = self.way_xy
        owner = self.m.way_of_position()
        ok = ~np.isnan(xy).any(axis=1)
        counts = np.bincount(owner[ok], minlength=self.m.n_ways)
        good = counts >= 2
        sel = ok & good[owner]
        out = np.full(self.m.n_ways, None, dtype=object)
        if sel.any():
            used, dense = np.unique(owner[sel], return_inverse=True)
            out[used] = shapely.linestrings(xy[sel], indices=dense)
        return out

    # -- lanelets ------------------------------------------------------------------------------------------
    @cached_property
    def lanelet_rows(self) -> np.ndarray:
        return np.flatnonzero(self.rel_type == "lanelet")

    def _role_way(self, rows: np.ndarray, role: str) -> np.ndarray:
        """For each relation row, the way row of its (first) member with this role; -1 if none."""
        m = self.m
        out = np.full(m.n_relations, -1, dtype=np.int64)
        sel = (m.rel_member_kind == 1) & (self.member_role == role)
        idx = np.flatnonzero(sel)[::-1]  # reversed so the first member wins on assignment
        out[self.member_owner[idx]] = m.rel_member_row[idx]
        return out[rows]

    @cached_property
    def lanelet_left(self) -> np.ndarray:
        return self._role_way(self.lanelet_rows, "left")

    @cached_property
    def lanelet_right(self) -> np.ndarray:
        return self._role_way(self.lanelet_rows, "right")

    @cached_property
    def lanelet_ok(self) -> np.ndarray:
        """Lanelets whose two bounds exist and have >= 2 positioned points."""
        g = self.way_geoms
        ok = (self.lanelet_left >= 0) & (self.lanelet_right >= 0)
        ok[ok] = np.array([g[i] is not None for i in self.lanelet_left[ok]], bool) & \
            np.array([g[i] is not None for i in self.lanelet_right[ok]], bool)
        return ok

    @cached_property
    def lanelet_centroid(self) -> np.ndarray:
        out = np.full((len(self.lanelet_rows), 2), np.nan)
        ok = self.lanelet_ok
        out[ok] = (self.way_centroid[self.lanelet_left[ok]] + self.way_centroid[self.lanelet_right[ok]]) / 2
        return out

    def way_end(self, ways: np.ndarray, last: bool) -> np.ndarray:
        ptr = self.m.way_ptr
        pos = ptr[ways + 1] - 1 if last else ptr[ways]
        return self.way_xy[pos]

    def way_end_node(self, ways: np.ndarray, last: bool) -> np.ndarray:
        ptr = self.m.way_ptr
        pos = ptr[ways + 1] - 1 if last else ptr[ways]
        return self.m.way_nodes[pos]

    @cached_property
    def relation_centroid(self) -> np.ndarray:
        """A place for each relation: the mean of its member ways' and points' positions."""
        m = self.m
        owner = self.member_owner
        pts = np.full((len(owner), 2), np.nan)
        w = (m.rel_member_kind == 1) & (m.rel_member_row >= 0)
        pts[w] = self.way_centroid[m.rel_member_row[w]]
        n = (m.rel_member_kind == 0) & (m.rel_member_row >= 0)
        pts[n] = self.xy[m.rel_member_row[n]]
        ok = ~np.isnan(pts).any(axis=1)
        out = np.full((m.n_relations, 2), np.nan)
        cnt = np.bincount(owner[ok], minlength=m.n_relations)
        sx = np.bincount(owner[ok], weights=pts[ok, 0], minlength=m.n_relations)
        sy = np.bincount(owner[ok], weights=pts[ok, 1], minlength=m.n_relations)
        has = cnt > 0
        out[has, 0] = sx[has] / cnt[has]
        out[has, 1] = sy[has] / cnt[has]
        # lanelets: use the bounds (members are ways anyway); relations of relations: left NaN
        return out

    # -- Lanelet2 ------------------------------------------------------------------------------------------
    @cached_property
    def lanelet2(self):
        """(LaneletMap, errors) from Lanelet2's robust loader."""
        from lanelets.model import load_lanelet2

        lmap, _proj, errors = load_lanelet2(self.m, self.origin)
        return lmap, errors

    @cached_property
    def routing_map(self):
        """Lanelet2's map without lanelets lacking a usable bound: RoutingGraph crashes (SIGSEGV) on those
        (their missing bounds are reported by other checks)."""
        import lanelet2

        lmap = self.lanelet2[0]
        if self.lanelet_ok.all():
            return lmap
        bad = set(self.m.rel_id[self.lanelet_rows[~self.lanelet_ok]].tolist())
        return lanelet2.core.createMapFromLanelets([ll for ll in lmap.laneletLayer if ll.id not in bad])

    @cached_property
    def routing_graph(self):
        import lanelet2
        from lanelet2.routing import RoutingGraph

        rules = lanelet2.traffic_rules.create(lanelet2.traffic_rules.Locations.Germany,
                                              lanelet2.traffic_rules.Participants.Vehicle)
        return RoutingGraph(self.routing_map, rules)


def _obj(items) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _to_float(values: np.ndarray) -> np.ndarray:
    try:
        return values.astype(float)
    except ValueError:
        pass
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values.tolist()):  # only when some value is not a number
        try:
            out[i] = float(v)
        except ValueError:
            pass
    return out
