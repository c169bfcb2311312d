"""Element-by-element view of an OSM document, independent of whitespace and order (for equality tests)."""
from lxml import etree


def canonical(xml: bytes) -> dict:
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False))
    out = {}
    for e in root:
        if e.tag in ("node", "way", "relation"):
            out[(e.tag, e.get("id"))] = (
                tuple(sorted(e.attrib.items())),
                tuple((c.tag, tuple(sorted(c.attrib.items()))) for c in e if isinstance(c.tag, str)),
            )
    return out


def top_level_others(xml: bytes) -> list[tuple]:
    root = etree.fromstring(xml)
    return [(e.tag, tuple(sorted(e.attrib.items()))) for e in root
            if isinstance(e.tag, str) and e.tag not in ("node", "way", "relation")]
