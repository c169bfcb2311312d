"""Edits of single verbatim OSM elements (bytes as :class:`lanelets.osm.OsmMap` keeps them).

Other packages change elements through these functions instead of parsing XML themselves, so the parser and
its hardening live in one place. The fragments are our own serialisation (no DTD), parsed with entities off.
"""
from __future__ import annotations

from lxml import etree

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _element(xml: bytes):
    return etree.fromstring(xml, _PARSER)


def edit_element(xml: bytes, *, attrs: dict[str, str] | None = None, drop_tags=(), add_tags: dict | None = None,
                 drop_refs: dict[str, set[str]] | None = None) -> bytes:
    """``xml`` with attributes set (order kept), ``<tag>`` children whose key is in ``drop_tags`` removed,
    ``add_tags`` appended, and ``<nd>``/``<member>`` children referring to a dropped id removed
    (``drop_refs`` maps a kind, node/way/relation, to the ids as strings; an ``<nd>`` refers to a node)."""
    el = _element(xml)
    for k, v in (attrs or {}).items():
        el.set(k, v)
    if drop_refs:
        for child in el.findall("*"):
            kind = "node" if child.tag == "nd" else child.get("type") if child.tag == "member" else None
            if kind is not None and child.get("ref") in drop_refs.get(kind, ()):
                el.remove(child)
    if drop_tags:
        for tag in el.findall("tag"):
            if tag.get("k") in drop_tags:
                el.remove(tag)
    for k, v in (add_tags or {}).items():
        etree.SubElement(el, "tag", k=k, v=v)
    return etree.tostring(el, with_tail=False)


def element_members(xml: bytes) -> list[tuple[str | None, str | None, str]]:
    """(type, ref, role) of a relation's members as written, even when a member does not exist."""
    return [(mm.get("type"), mm.get("ref"), mm.get("role") or "") for mm in _element(xml).iterfind("member")]
