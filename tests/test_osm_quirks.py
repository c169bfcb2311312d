"""Exporter quirks: whatever Lanelet2's own loader (pugixml) loads from some bytes, read_osm loads too, with the
same elements. Each case is compared with lanelet2.io.loadRobust on the same bytes, not with a fixed answer."""
import gzip
import io

import lanelet2
import numpy as np
import pytest
from lanelet2.io import Origin
from lanelet2.projection import UtmProjector

from lanelets import MapError, read_osm

BODY = b"""<osm version="0.6" generator="quirks">
  <node id="1" lat="39.80000" lon="116.50000"><tag k="ele" v="31.5"/></node>
  <node id="2" lat="39.80010" lon="116.50000"/>
  <node id="3" lat="39.80000" lon="116.50004"/>
  <node id="4" lat="39.80010" lon="116.50004"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><tag k="type" v="line_thin"/><tag k="subtype" v="solid"/></way>
  <way id="11"><nd ref="3"/><nd ref="4"/><tag k="type" v="line_thin"/><tag k="subtype" v="dashed"/></way>
  <relation id="20"><member type="way" ref="10" role="left"/><member type="way" ref="11" role="right"/>
    <tag k="type" v="lanelet"/><tag k="subtype" v="road"/><tag k="name" v="Jinghai &amp; Kechuang"/></relation>
</osm>
"""
DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'
BOM = b"\xef\xbb\xbf"


def _josm(body: bytes) -> bytes:
    """What JOSM saves for an unsaved edit: upload='false', action/visible, negative ids, single quotes."""
    out = body.replace(b'<osm version="0.6"', b"<osm version='0.6' upload='false'")
    for i in (b"1", b"2", b"3", b"4", b"10", b"11", b"20"):
        out = out.replace(b'id="%s"' % i, b"id='-%s' action='modify' visible='true'" % i)
        out = out.replace(b'ref="%s"' % i, b"ref='-%s'" % i)
    return out


QUIRKS = {
    "leading_blank_lines": b"\n\n" + DECL + BODY,
    "leading_spaces_tabs_crlf": b" \t\r\n" + DECL + BODY,
    "utf8_bom": BOM + DECL + BODY,
    "bom_then_whitespace": BOM + b"\r\n  " + DECL + BODY,
    "whitespace_then_bom": b"\n" + BOM + DECL + BODY,
    "no_declaration": BODY,
    "no_declaration_leading_whitespace": b"\n  " + BODY,
    "crlf": (DECL + BODY).replace(b"\n", b"\r\n"),
    "single_quoted_attributes": DECL + BODY.replace(b'"', b"'"),
    "josm_negative_ids_action_visible_upload": DECL + _josm(BODY),
    "comment_before_root": b"<!-- exported by RoadRunner -->\n" + BODY,
    "declaration_after_comment": b"<!-- exported -->\n" + DECL + BODY,
    "utf16_with_bom": (b'<?xml version="1.0" encoding="UTF-16"?>\n' + BODY).decode().encode("utf-16"),
    "latin1_declared": b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + BODY.replace(b"quirks", b"caf\xe9"),
    "trailing_whitespace": DECL + BODY + b"\n\n  \n",
}


def _lanelet2(path):
    lmap, _ = lanelet2.io.loadRobust(str(path), UtmProjector(Origin(39.8, 116.5)))
    return lmap


@pytest.mark.parametrize("name", sorted(QUIRKS))
def test_quirk_loads_like_lanelet2(name, tmp_path):
    data = QUIRKS[name]
    path = tmp_path / f"{name}.osm"
    path.write_bytes(data)
    lmap = _lanelet2(path)
    m = read_osm(path)
    assert sorted(m.node_id.tolist()) == sorted(p.id for p in lmap.pointLayer)
    assert sorted(m.way_id.tolist()) == sorted(ls.id for ls in lmap.lineStringLayer)
    lanelets = {ll.id: ll for ll in lmap.laneletLayer}
    assert sorted(m.rel_id.tolist()) == sorted(lanelets)
    for tags, rid in zip(m.rel_tags, m.rel_id.tolist()):
        assert tags["name"] == lanelets[rid].attributes["name"]
    ele = {int(i): float(t.get("ele", 0.0)) for i, t in zip(m.node_id, m.node_tags)}
    assert ele == {p.id: p.z for p in lmap.pointLayer}  # Lanelet2 keeps ``ele`` as z
    # bytes, a file object and a gzip'd copy read the same
    for other in (read_osm(data), read_osm(io.BytesIO(data)), read_osm(gzip.compress(data))):
        assert other.node_id.tolist() == m.node_id.tolist()
        assert np.array_equal(other.node_lat, m.node_lat) and other.rel_xml.tolist() == m.rel_xml.tolist()


def test_leading_blank_lines_are_no_longer_an_error():
    m = read_osm(b"\n\n" + DECL + BODY, name="blank.osm")
    assert m.n_nodes == 4 and m.source == "blank.osm"


@pytest.mark.parametrize("prefix", [b"", BOM, b"\n\n", BOM + b"\n", b"<!-- c -->\n"])
def test_dtd_refused_behind_any_prologue(prefix):
    doc = (prefix + b'<?xml version="1.0"?>\n<!DOCTYPE osm [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;">]>\n'
           b'<osm><node id="1" lat="1" lon="2"><tag k="x" v="&b;"/></node></osm>')
    with pytest.raises(MapError, match="DTD"):
        read_osm(doc)
    with pytest.raises(MapError, match="DTD"):
        read_osm(gzip.compress(doc))


def test_dtd_refused_in_utf16():
    doc = ('<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE osm [<!ENTITY a "aaaa">]>\n'
           '<osm><node id="1" lat="1" lon="2"><tag k="x" v="&a;"/></node></osm>').encode("utf-16")
    with pytest.raises(MapError, match="DTD"):
        read_osm(doc)


@pytest.mark.parametrize("name,data", [
    # pugixml tolerates these; libxml2 would have to guess, and a guessed map must not be published
    ("bare_ampersand", DECL + BODY.replace(b"&amp;", b"&")),
    ("bytes_after_root", DECL + BODY + b"garbage"),
])
def test_malformed_xml_lanelet2_tolerates_is_refused_with_one_line(name, data, tmp_path):
    path = tmp_path / f"{name}.osm"
    path.write_bytes(data)
    assert len(_lanelet2(path).laneletLayer) == 1  # what pugixml does with it
    with pytest.raises(MapError, match=rf"{name}\.osm: malformed XML") as exc:
        read_osm(path)
    assert "\n" not in str(exc.value)


def test_unreadable_path_is_a_map_error(tmp_path):
    with pytest.raises(MapError, match="cannot read"):
        read_osm(tmp_path / "missing.osm")
    with pytest.raises(MapError, match="malformed XML"):
        read_osm(b"\x1f\x8b\x08\x00garbage")


def test_a_callers_file_object_stays_open_and_is_named(tmp_path):
    path = tmp_path / "named.osm"
    path.write_bytes(DECL + BODY)
    with open(path, "rb") as f:
        m = read_osm(f)
        assert not f.closed
    assert m.source == str(path) and m.n_nodes == 4
