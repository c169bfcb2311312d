"""Lossless element-level model of a Lanelet2 ``.osm`` file.

Why not only ``lanelet2.io``: a Lanelet2 read/write round trip drops ``<MetaInfo>`` and every regulatory
element Lanelet2 does not know (Autoware's ``bus_stop_area``, ``road_marking`` ...), re-projects coordinates
and renumbers nothing but rewrites every number (see docs/ARCHITECTURE.md). Tiles and releases must keep IDs,
tags and coordinates exactly as the source has them, so this module keeps each top-level element's XML
verbatim (as lxml serialises it) next to numpy arrays of what the geometry code needs. Lanelet2 is still the
map model for routing, matching and checks: :func:`lanelets.model.load_lanelet2` loads the same file.

Parsing is lxml's (libxml2), streamed with ``iterparse`` so memory stays proportional to the output arrays,
not to an XML tree. Documents with a DTD are refused: entity expansion ("billion laughs") is never attempted.
"""
from __future__ import annotations

import gzip
import io
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from lxml import etree

from lanelets.errors import MapError
from lanelets.files import write_atomic  # noqa: F401  (re-exported: lanelets.write_atomic)

KINDS = ("node", "way", "relation")
# Our own serialised elements (never a DTD): still parsed with entities and network off.
_FRAGMENTS = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
# Regulatory-element subtypes that lanelet2 1.2.3 models; every other subtype is kept verbatim only.
LANELET2_REGELEM_SUBTYPES = frozenset(
    {"traffic_light", "traffic_sign", "speed_limit", "right_of_way", "all_way_stop"}
)
_MEMBER_KIND = {"node": 0, "way": 1, "relation": 2}


@dataclass
class OsmMap:
    """A Lanelet2 OSM file as arrays (for geometry) plus verbatim elements (for lossless output).

    Rows are in file order per kind. ``*_xml`` hold each element's serialised XML (bytes, no tail).
    ``way_nodes`` is CSR: the node *rows* of way ``w`` are ``way_nodes[way_ptr[w]:way_ptr[w+1]]``.
    Relation members are CSR too, each with a kind (0 node, 1 way, 2 relation), a row and a role.
    """

    source: str
    root_open: bytes
    extras: list[bytes]  # top-level elements other than node/way/relation (MetaInfo, bounds, ...)
    node_id: np.ndarray
    node_lat: np.ndarray  # NaN where the file has an empty lat
    node_lon: np.ndarray
    node_local_x: np.ndarray  # NaN where absent
    node_local_y: np.ndarray
    node_xml: np.ndarray  # object array of bytes
    way_id: np.ndarray
    way_ptr: np.ndarray
    way_nodes: np.ndarray
    way_tags: list[dict[str, str]]
    way_xml: np.ndarray
    rel_id: np.ndarray
    rel_ptr: np.ndarray
    rel_member_kind: np.ndarray
    rel_member_row: np.ndarray
    rel_member_role: list[str]
    rel_tags: list[dict[str, str]]
    rel_xml: np.ndarray
    info: dict = field(default_factory=dict)
    _node_tags: list | None = field(default=None, repr=False)

    @property
    def node_tags(self) -> list[dict[str, str]]:
        """Tags of each point, parsed on first use in one pass over all points' XML (most jobs, tiling among
        them, never need them: a dict per point would cost memory on every read)."""
        if self._node_tags is None or len(self._node_tags) != self.n_nodes:
            tags, xml = [], self.node_xml.tolist()
            for i in range(0, len(xml), 20_000):  # chunks: a tree of every point at once would cost GBs
                root = etree.fromstring(b"<osm>" + b"".join(xml[i:i + 20_000]) + b"</osm>", _FRAGMENTS)
                tags += [{t.get("k"): t.get("v") for t in el.iterfind("tag")} for el in root]
            self._node_tags = tags
        return self._node_tags

    # -- sizes and classification -------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return len(self.node_id)

    @property
    def n_ways(self) -> int:
        return len(self.way_id)

    @property
    def n_relations(self) -> int:
        return len(self.rel_id)

    def relation_types(self) -> np.ndarray:
        return np.array([t.get("type", "") for t in self.rel_tags], dtype=object)

    @property
    def local_only(self) -> bool:
        """True when points carry no lat/lon, only ``local_x``/``local_y`` (Autoware's local maps)."""
        return bool(self.n_nodes) and bool(np.isnan(self.node_lat).all())

    def summary(self) -> dict:
        """What was read and how each kind of element is kept (nothing is dropped silently)."""
        types = self.relation_types()
        subtypes = np.array([t.get("subtype", "") for t in self.rel_tags], dtype=object)
        regelem = types == "regulatory_element"
        known = np.array([s in LANELET2_REGELEM_SUBTYPES for s in subtypes], dtype=bool)
        verbatim_regelems: dict[str, int] = {}
        for s in subtypes[regelem & ~known]:
            verbatim_regelems[s or "(none)"] = verbatim_regelems.get(s or "(none)", 0) + 1
        other_relations: dict[str, int] = {}
        for t in types[~np.isin(types, ["lanelet", "multipolygon", "regulatory_element"])]:
            other_relations[t or "(none)"] = other_relations.get(t or "(none)", 0) + 1
        n_local = int((~np.isnan(self.node_local_x)).sum())
        if self.local_only:
            coords = "local_x/local_y only (empty lat/lon): positions need an origin"
        elif n_local:
            coords = "lat/lon, with local_x/local_y kept as tags"
        else:
            coords = "lat/lon"
        return {
            "source": self.source,
            "points": self.n_nodes,
            "line_strings": self.n_ways,
            "lanelets": int((types == "lanelet").sum()),
            "areas": int((types == "multipolygon").sum()),
            "regulatory_elements": int(regelem.sum()),
            "coordinates": coords,
            "negative_ids": int((self.node_id < 0).sum() + (self.way_id < 0).sum() + (self.rel_id < 0).sum()),
            "kept": {
                "modelled_by_lanelet2": "points, line strings, lanelets, areas and regulatory elements of "
                + ", ".join(sorted(LANELET2_REGELEM_SUBTYPES)),
                "verbatim_regulatory_elements": verbatim_regelems,
                "verbatim_other_relations": other_relations,
                "verbatim_top_level": [_tag_of(x) for x in self.extras],
                "unknown_tags": "kept verbatim on every element",
            },
        }

    # -- lossless output ------------------------------------------------------------------------
    def xml_bytes(self, nodes=None, ways=None, relations=None) -> bytes:
        """The OSM document holding the given rows (boolean masks or index arrays; ``None`` = all)."""
        return osm_document(self.root_open, self.extras,
                            *(xml if sel is None else xml[sel] for xml, sel in
                              ((self.node_xml, nodes), (self.way_xml, ways), (self.rel_xml, relations))))

    def write(self, path: str | os.PathLike, **selection) -> None:
        write_atomic(path, self.xml_bytes(**selection))

    # -- positions ------------------------------------------------------------------------------
    def lonlat(self, origin: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """WGS-84 lon/lat of every point. Points without lat/lon are placed from ``local_x``/``local_y``
        as Lanelet2's ``UtmProjector(origin)`` does: UTM metres relative to the origin's UTM position."""
        lon, lat = self.node_lon.copy(), self.node_lat.copy()
        missing = np.isnan(lat) | np.isnan(lon)
        if missing.any():
            has_local = missing & ~np.isnan(self.node_local_x) & ~np.isnan(self.node_local_y)
            if (missing & ~has_local).any():
                bad = self.node_id[missing & ~has_local][0]
                raise MapError(f"{self.source}: point {bad} has neither lat/lon nor local_x/local_y")
            from lanelets.projection import local_to_lonlat

            lat0, lon0 = origin if origin is not None else (0.0, 0.0)
            lon[has_local], lat[has_local] = local_to_lonlat(
                self.node_local_x[has_local], self.node_local_y[has_local], lat0, lon0
            )
        return lon, lat

    def way_geometries(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """One shapely geometry per way, built in one vectorised call: line strings, a point for a one-point
        way, an empty collection for a way with no points."""
        import shapely

        way_len = np.diff(self.way_ptr)
        geoms = np.empty(self.n_ways, dtype=object)
        line = way_len >= 2
        if line.any():
            pos_way = self.way_of_position()
            sel = line[pos_way]
            coords = np.column_stack([lon[self.way_nodes[sel]], lat[self.way_nodes[sel]]])
            _, dense = np.unique(pos_way[sel], return_inverse=True)
            geoms[line] = shapely.linestrings(coords, indices=dense)
        single = way_len == 1
        if single.any():
            first = self.way_nodes[self.way_ptr[:-1][single]]
            geoms[single] = shapely.points(lon[first], lat[first])
        if (way_len == 0).any():
            geoms[way_len == 0] = shapely.from_wkt("GEOMETRYCOLLECTION EMPTY")
        return geoms

    def way_of_position(self) -> np.ndarray:
        """For each entry of ``way_nodes``, the way row it belongs to."""
        return np.repeat(np.arange(self.n_ways), np.diff(self.way_ptr))

    def relation_of_member(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_relations), np.diff(self.rel_ptr))


def osm_document(root_open: bytes, extras, *elements) -> bytes:
    """The one OSM writer: declaration, ``<osm ...>``, top-level extras, then each sequence of verbatim
    elements (nodes, ways, relations), one per line."""
    buf = [b'<?xml version="1.0" encoding="UTF-8"?>\n', root_open, b"\n"]
    buf += [b"  " + x + b"\n" for x in extras]
    for chosen in elements:
        chosen = chosen.tolist() if isinstance(chosen, np.ndarray) else list(chosen)
        if chosen:
            buf.append(b"  " + b"\n  ".join(chosen) + b"\n")
    buf.append(b"</osm>\n")
    return b"".join(buf)


def merge(maps, *, name: str = "merged tiles", validate: bool = True) -> OsmMap:
    """One map from maps that overlap (a release's self-contained tiles copy shared elements verbatim): each
    element once, by kind and id, first copy first, in order of first appearance. Root attributes and
    top-level extras come from the first map."""
    maps = list(maps)
    if not maps:
        raise MapError(f"{name}: nothing to merge")
    parts = []
    for kind in ("node", "way", "rel"):
        ids = np.concatenate([getattr(m, f"{kind}_id") for m in maps])
        xml = np.concatenate([getattr(m, f"{kind}_xml") for m in maps])
        _, first_row = np.unique(ids, return_index=True)
        parts.append(xml[np.sort(first_row)])
    return read_osm(osm_document(maps[0].root_open, maps[0].extras, *parts), name=name, validate=validate)


def _tag_of(xml: bytes) -> str:
    return xml[1 : xml.find(b" ") if b" " in xml[:64] else xml.find(b">")].decode().rstrip("/")


def _floats(values: list, source: str, what: str, ids: list) -> np.ndarray:
    """Strings to float64 in one numpy pass; empty or missing values become NaN."""
    arr = np.array(values, dtype=object)
    arr[(arr == "") | (arr == None)] = "nan"  # noqa: E711 (element-wise)
    try:
        return arr.astype(np.float64)
    except ValueError:
        for v, eid in zip(values, ids):
            try:
                float(v or "nan")
            except ValueError:
                raise MapError(f"{source}: point {eid} has a {what} that is not a number: {v!r}") from None
        raise


_PROLOGUE_MAX = 1 << 20  # bytes of comments/PIs allowed before the root element
_WS = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_DECL = re.compile(rb"<\?xml\s[^>]*\?>")


def read_osm(source, *, validate: bool = True, name: str | None = None) -> OsmMap:
    """Read a Lanelet2 ``.osm`` document from a path, bytes or a binary file object (gzip'd or not), the way
    ``rasterio.open`` takes either. The one XML reader of the project: every map and tile goes through it, so
    its hardening holds everywhere. ``name`` is what errors call the input (default: the path, the file
    object's name, or ``<bytes>``).

    Raises :class:`MapError` (one line, naming the input) on bad input: malformed XML, a DTD/entities, no
    ``<osm>`` root, duplicate IDs, dangling references, coordinates outside WGS-84 ranges, an empty file.
    Accepts what Lanelet2's own loader (pugixml) accepts from real exporters: a UTF-8 byte-order mark or
    whitespace before the XML declaration, a declaration after a leading comment, no declaration, CRLF,
    single-quoted attributes, JOSM's ``action``/``visible``/``upload`` attributes, negative ids, UTF-16."""
    raw, source_name, close = _open(source)
    source_name = name or source_name
    try:
        return _parse(_prepared(raw, source_name), source_name, validate)
    except (etree.LxmlError, EOFError, OSError, zlib.error) as exc:  # EOF/OSError/zlib: a damaged gzip stream
        msg = " ".join(str(getattr(exc, "msg", None) or exc).split())  # libxml2 messages can span lines
        raise MapError(f"{source_name}: malformed XML: {msg}") from None
    finally:
        if close:  # only what we opened; a caller's file object stays open
            raw.close()


def _open(source) -> tuple[BinaryIO, str, bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), "<bytes>", True
    if hasattr(source, "read"):
        return source, str(getattr(source, "name", "<stream>")), False
    path = Path(source)
    try:
        return open(path, "rb"), str(path), True
    except OSError as exc:
        raise MapError(f"{path}: cannot read: {exc.strerror or exc}") from None


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were read (and possibly rewritten) ahead: ``head`` then the rest."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def _read_head(stream: BinaryIO) -> bytes:
    """Bytes up to past the root element's start (capped), so the whole prologue can be looked at."""
    head = b""
    while len(head) < _PROLOGUE_MAX:
        chunk = stream.read(65536)
        if not chunk:
            break
        head += chunk
        if _root_start(head) >= 0:
            break
    return head


def _prepared(stream: BinaryIO, source: str):
    """The stream as libxml2 wants it: gzip undone, and the prologue normalised the way pugixml reads it
    (libxml2 refuses whitespace or a second BOM before ``<?xml``, and a declaration after a comment). A
    DTD or entity declaration before the root is refused: entity expansion is never attempted."""
    head = stream.read(2)
    if head == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=_Prefixed(head, stream), mode="rb")
        head = b""
    head += _read_head(stream)
    if not head.strip(_WS + _BOM):
        raise MapError(f"{source}: empty file")
    wide = "utf-32" if head[:4] in (b"\0\0\xfe\xff", b"\xff\xfe\0\0") else (
        "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else None)
    if wide:  # UTF-16/32 with a BOM: libxml2 decodes it; look for a DTD in the decoded text
        text = head[: len(head) // 4 * 4].decode(wide, errors="replace")
        if "<!DOCTYPE" in text or "<!ENTITY" in text:
            raise MapError(f"{source}: XML with a DTD or entity declarations is refused (entity expansion)")
        return _Prefixed(head, stream)
    body = head.lstrip(_WS + _BOM)
    while body[:3] == _BOM:  # several BOMs or BOM/whitespace mixtures (editors that add one per save)
        body = body[3:].lstrip(_WS)
    root_at = _root_start(body)
    prologue = body if root_at < 0 else body[:root_at]
    if b"<!DOCTYPE" in prologue or b"<!ENTITY" in body:
        raise MapError(f"{source}: XML with a DTD or entity declarations is refused (entity expansion)")
    decl = _DECL.search(prologue)
    if decl is not None and decl.start() > 0:  # pugixml takes a declaration after a comment; move it first
        body = decl.group(0) + b"\n" + body[: decl.start()] + body[decl.end():]
    return _Prefixed(body, stream)


def _root_start(data: bytes) -> int:
    """Offset of the first element start tag (not a comment, PI or declaration); -1 if none yet."""
    for m in re.finditer(rb"<", data):
        nxt = data[m.start() + 1: m.start() + 2]
        if nxt not in (b"?", b"!"):
            return m.start()
    return -1


def _parse(f, source: str, validate: bool) -> OsmMap:
    # Only node/way/relation elements come back to Python (their children are read from the element), which
    # keeps the per-element work in libxml2; other top-level elements are picked up as siblings.
    ctx = etree.iterparse(f, events=("end",), tag=KINDS, resolve_entities=False, no_network=True,
                          huge_tree=False, load_dtd=False)
    n_id, n_lat, n_lon, n_lx, n_ly, n_xml = [], [], [], [], [], []
    w_id, w_refs, w_tags, w_xml = [], [], [], []
    r_id, r_members, r_tags, r_xml = [], [], [], []
    extras: list[bytes] = []
    root = None
    tostring = etree.tostring
    for _, elem in ctx:
        parent = elem.getparent()
        if root is None:
            root = parent
            if root is None or root.tag != "osm" or root.getparent() is not None:
                raise MapError(f"{source}: root element is <{getattr(root, 'tag', None)}>, expected <osm>")
        if parent is not root:
            continue  # a nested element of the same name (not OSM): left to its parent
        # Siblings before this element were all handled; keep the non-OSM ones (MetaInfo, bounds) verbatim.
        while True:
            first = root[0]
            if first is elem:
                break
            if isinstance(first.tag, str) and first.tag not in KINDS:
                extras.append(tostring(first, with_tail=False))
            del root[0]
        tag = elem.tag
        if tag == "node":
            eid = elem.get("id")
            n_id.append(eid)
            n_lat.append(elem.get("lat"))
            n_lon.append(elem.get("lon"))
            lx = ly = ""
            for child in elem:
                k = child.get("k")
                if k == "local_x":
                    lx = child.get("v")
                elif k == "local_y":
                    ly = child.get("v")
            n_lx.append(lx)
            n_ly.append(ly)
            n_xml.append(tostring(elem, with_tail=False))
        elif tag == "way":
            w_id.append(elem.get("id"))
            refs, tags = [], {}
            for child in elem:
                if child.tag == "nd":
                    refs.append(child.get("ref"))
                elif child.tag == "tag":
                    tags[child.get("k")] = child.get("v")
            w_refs.append(refs)
            w_tags.append(tags)
            w_xml.append(tostring(elem, with_tail=False))
        else:
            r_id.append(elem.get("id"))
            members, tags = [], {}
            for child in elem:
                if child.tag == "member":
                    members.append((child.get("type"), child.get("ref"), child.get("role") or ""))
                elif child.tag == "tag":
                    tags[child.get("k")] = child.get("v")
            r_members.append(members)
            r_tags.append(tags)
            r_xml.append(tostring(elem, with_tail=False))
        elem.clear(keep_tail=False)
    if root is None:
        root = ctx.root
        if root is None or root.tag != "osm":
            raise MapError(f"{source}: root element is <{getattr(root, 'tag', None)}>, expected <osm>")
    for rest in root:
        if isinstance(rest.tag, str) and rest.tag not in KINDS:
            extras.append(tostring(rest, with_tail=False))
    attrs = "".join(f' {k}="{_attr_escape(v)}"' for k, v in root.attrib.items())
    root_open = f"<osm{attrs}>".encode()

    try:
        node_id = np.array(n_id, dtype=np.int64)
        way_id = np.array(w_id, dtype=np.int64)
        rel_id = np.array(r_id, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise MapError(f"{source}: an element has a missing or non-integer (64-bit) id") from None
    m = OsmMap(
        source=source,
        root_open=root_open,
        extras=extras,
        node_id=node_id,
        node_lat=_floats(n_lat, source, "lat", n_id),
        node_lon=_floats(n_lon, source, "lon", n_id),
        node_local_x=_floats(n_lx, source, "local_x", n_id),
        node_local_y=_floats(n_ly, source, "local_y", n_id),
        node_xml=_objarray(n_xml),
        way_id=way_id,
        way_ptr=np.zeros(1, dtype=np.int64),
        way_nodes=np.zeros(0, dtype=np.int64),
        way_tags=w_tags,
        way_xml=_objarray(w_xml),
        rel_id=rel_id,
        rel_ptr=np.zeros(1, dtype=np.int64),
        rel_member_kind=np.zeros(0, dtype=np.int8),
        rel_member_row=np.zeros(0, dtype=np.int64),
        rel_member_role=[],
        rel_tags=r_tags,
        rel_xml=_objarray(r_xml),
    )
    if validate:
        for name, ids in (("point", node_id), ("line string", way_id), ("relation", rel_id)):
            _check_unique(ids, source, name)
        _check_ranges(m)
    _resolve_refs(m, w_refs, r_members, validate)
    return m


def _attr_escape(v: str) -> str:
    return v.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def _objarray(items: list) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _check_unique(ids: np.ndarray, source: str, name: str) -> None:
    if len(ids) != len(np.unique(ids)):
        s = np.sort(ids)
        dup = s[1:][s[1:] == s[:-1]][0]
        raise MapError(f"{source}: duplicate {name} id {dup}")


def _check_ranges(m: OsmMap) -> None:
    bad = (np.abs(m.node_lat) > 90) | (np.abs(m.node_lon) > 180)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MapError(
            f"{m.source}: point {m.node_id[i]} is outside WGS-84 ranges (lat {m.node_lat[i]}, lon {m.node_lon[i]})"
        )


def _lookup(ids_sorted: np.ndarray, order: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Rows of ``refs`` in an id array (via its argsort); -1 where missing."""
    if len(ids_sorted) == 0:
        return np.full(len(refs), -1, dtype=np.int64)
    pos = np.searchsorted(ids_sorted, refs)
    pos_c = np.minimum(pos, len(ids_sorted) - 1)
    found = ids_sorted[pos_c] == refs
    return np.where(found, order[pos_c], -1)


def _resolve_refs(m: OsmMap, w_refs: list[list[str]], r_members: list[list[tuple]], validate: bool) -> None:
    node_order = np.argsort(m.node_id, kind="stable")
    node_sorted = m.node_id[node_order]
    lengths = np.fromiter((len(r) for r in w_refs), dtype=np.int64, count=len(w_refs))
    m.way_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    try:
        flat = np.array([ref for refs in w_refs for ref in refs], dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise MapError(f"{m.source}: a line string has a missing or non-integer (64-bit) node ref") from None
    rows = _lookup(node_sorted, node_order, flat)
    if validate and (rows < 0).any():
        i = int(np.flatnonzero(rows < 0)[0])
        way = m.way_id[np.searchsorted(m.way_ptr, i, side="right") - 1]
        raise MapError(f"{m.source}: dangling reference: line string {way} refers to missing point {flat[i]}")
    m.way_nodes = rows

    lengths = np.fromiter((len(r) for r in r_members), dtype=np.int64, count=len(r_members))
    m.rel_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    kinds, refs, roles = [], [], []
    for members in r_members:
        for kind, ref, role in members:
            if kind not in _MEMBER_KIND:
                raise MapError(f"{m.source}: relation member of unknown type {kind!r}")
            kinds.append(_MEMBER_KIND[kind])
            refs.append(ref)
            roles.append(role)
    try:
        ref_arr = np.array(refs, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise MapError(f"{m.source}: a relation member has a missing or non-integer (64-bit) ref") from None
    kind_arr = np.array(kinds, dtype=np.int8)
    member_rows = np.full(len(ref_arr), -1, dtype=np.int64)
    for code, ids in ((0, m.node_id), (1, m.way_id), (2, m.rel_id)):
        sel = kind_arr == code
        order = np.argsort(ids, kind="stable")
        member_rows[sel] = _lookup(ids[order], order, ref_arr[sel])
    if validate and (member_rows < 0).any():
        i = int(np.flatnonzero(member_rows < 0)[0])
        rel = m.rel_id[np.searchsorted(m.rel_ptr, i, side="right") - 1]
        kind = KINDS[kind_arr[i]]
        raise MapError(f"{m.source}: dangling reference: relation {rel} refers to missing {kind} {ref_arr[i]}")
    m.rel_member_kind = kind_arr
    m.rel_member_row = member_rows
    m.rel_member_role = roles
