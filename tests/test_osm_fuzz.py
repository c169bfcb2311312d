"""Property-based fuzzing of the one OSM reader (issue 14, "keep it that way").

Properties: any bytes give an OsmMap or a one-line MapError, never another exception; a well-formed map built
from arbitrary ids, coordinates and tag text (in any exporter's prologue and quoting) reads back exactly, and
what the writer makes of it reads back to the same map. Bounded in `make test`; `make fuzz` runs it long."""
import gzip
import io

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lanelets import MapError, read_osm
from lanelets.osm import merge

pytestmark = pytest.mark.fuzz

# XML 1.0 Char production, minus surrogates (which cannot be encoded)
xml_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff",
                                 min_codepoint=0x20) | st.sampled_from("\t\n\r"), max_size=20)
ids = st.integers(min_value=-(2 ** 62), max_value=2 ** 62)
# local_x/local_y must be numbers (the reader refuses other values: they place points): free text elsewhere
tag_keys = xml_text.filter(lambda k: bool(k) and k not in ("local_x", "local_y"))


def _attr(v: str, quote: str) -> str:
    v = v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    v = v.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")
    return v.replace(quote, "&quot;" if quote == '"' else "&apos;")


@st.composite
def osm_maps(draw):
    node_ids = draw(st.lists(ids, min_size=1, max_size=8, unique=True))
    nodes = [(i, draw(st.floats(-90, 90)), draw(st.floats(-180, 180)),
              draw(st.dictionaries(tag_keys, xml_text, max_size=3))) for i in node_ids]
    way_ids = draw(st.lists(ids, max_size=4, unique=True))
    ways = [(i, draw(st.lists(st.sampled_from(node_ids), min_size=0, max_size=5)),
             draw(st.dictionaries(tag_keys, xml_text, max_size=3))) for i in way_ids]
    rel_ids = draw(st.lists(ids, max_size=3, unique=True))
    members = [("node", i) for i in node_ids] + [("way", i) for i in way_ids] + [("relation", i) for i in rel_ids]
    rels = [(i, draw(st.lists(st.tuples(st.sampled_from(members), xml_text), max_size=4)),
             draw(st.dictionaries(tag_keys, xml_text, max_size=3))) for i in rel_ids]
    return nodes, ways, rels


def _document(m, quote: str, prologue: bytes, newline: str, josm: bool) -> bytes:
    q = quote
    extra = f" action={q}modify{q} visible={q}true{q}" if josm else ""
    tags = lambda d: "".join(f"<tag k={q}{_attr(k, q)}{q} v={q}{_attr(v, q)}{q}/>" for k, v in d.items())  # noqa
    nodes, ways, rels = m
    out = [f"<osm version={q}0.6{q}" + (f" upload={q}false{q}" if josm else "") + ">"]
    out += [f"<node id={q}{i}{q}{extra} lat={q}{lat!r}{q} lon={q}{lon!r}{q}>{tags(t)}</node>" for i, lat, lon, t in nodes]
    out += [f"<way id={q}{i}{q}{extra}>" + "".join(f"<nd ref={q}{r}{q}/>" for r in refs) + tags(t) + "</way>"
            for i, refs, t in ways]
    out += [f"<relation id={q}{i}{q}{extra}>" + "".join(
        f"<member type={q}{k}{q} ref={q}{r}{q} role={q}{_attr(role, q)}{q}/>" for (k, r), role in mem) + tags(t)
        + "</relation>" for i, mem, t in rels]
    out.append("</osm>")
    return prologue + newline.join(out).encode()


prologues = st.sampled_from([b"", b'<?xml version="1.0" encoding="UTF-8"?>\n', b"\xef\xbb\xbf", b"\n\n  ",
                             b'\xef\xbb\xbf\n<?xml version="1.0"?>', b'\r\n<?xml version="1.0" encoding="UTF-8"?>\r\n',
                             b'<!-- exporter -->\n<?xml version="1.0"?>\n'])


@given(osm_maps(), st.sampled_from(['"', "'"]), prologues, st.sampled_from(["\n", "\r\n", ""]), st.booleans(),
       st.sampled_from(["path", "bytes", "stream", "gzip"]))
def test_well_formed_maps_read_back_exactly(tmp_path_factory, m, quote, prologue, newline, josm, how):
    data = _document(m, quote, prologue, newline, josm)
    if how == "path":
        path = tmp_path_factory.mktemp("fuzz") / "m.osm"
        path.write_bytes(data)
        got = read_osm(path)
    else:
        got = read_osm({"bytes": data, "stream": io.BytesIO(data), "gzip": gzip.compress(data)}[how])
    nodes, ways, rels = m
    assert got.node_id.tolist() == [n[0] for n in nodes]
    assert got.node_lat.tolist() == [n[1] for n in nodes] and got.node_lon.tolist() == [n[2] for n in nodes]
    assert got.node_tags == [n[3] for n in nodes]
    assert got.way_tags == [w[2] for w in ways] and got.rel_tags == [r[2] for r in rels]
    for w, (_, refs, _) in enumerate(ways):
        assert got.node_id[got.way_nodes[got.way_ptr[w]:got.way_ptr[w + 1]]].tolist() == refs
    assert got.rel_member_role == [role for _, mem, _ in rels for _, role in mem]
    # the one writer's output, and a merge of the map with itself, read back to the same map
    again = read_osm(got.xml_bytes())
    merged = merge([got, again])
    for other in (again, merged):
        assert other.node_xml.tolist() == got.node_xml.tolist() and other.rel_xml.tolist() == got.rel_xml.tolist()
        assert other.way_tags == got.way_tags and np.array_equal(other.way_nodes, got.way_nodes)


def _one_line_error_or_map(data: bytes) -> None:
    try:
        read_osm(data)
    except MapError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("<bytes>: ")


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data):
    _one_line_error_or_map(data)
    _one_line_error_or_map(gzip.compress(data))


@given(osm_maps(), st.data())
def test_mutated_maps_never_crash(m, data):
    doc = bytearray(_document(m, '"', b'<?xml version="1.0"?>\n', "\n", False))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(doc)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = data.draw(st.sampled_from([b"<", b">", b"&", b'"', b"'", b"/", b"=", b"-", b"e", b"id", b"ref",
                                           b"<!DOCTYPE x>", b"<!ENTITY a 'b'>", b"&a;", b"\xef\xbb\xbf", b"\x00",
                                           b"\xff", b"nan", b"inf", b"1e999", b"<node/>", b"<way/>",
                                           b"<relation/>", b"<nd ref='x'/>", b"<member type='q' ref='1'/>"]))
        if op == "insert":
            doc[at:at] = chunk
        elif op == "delete":
            del doc[at:at + len(chunk)]
        else:
            doc[at:at + len(chunk)] = chunk
    assume(len(doc) > 0)
    _one_line_error_or_map(bytes(doc))


@pytest.mark.parametrize("doc", [
    # what the fuzzers found: each used to raise ValueError/TypeError/OverflowError or a multi-line message
    b'<osm><node id="1" lat="1" lon="1"/><way id="2"><nd ref="x"/></way></osm>',
    b'<osm><node id="1" lat="1" lon="1"/><way id="2"><nd/></way></osm>',
    b'<osm><node id="1" lat="1" lon="1"/><relation id="2"><member type="node"/></relation></osm>',
    b'<osm><node id="99999999999999999999" lat="1" lon="1"/></osm>',
    b'<\x00?xml version="1.0"?>\n<osm/>',
])
def test_found_by_fuzzing(doc):
    for validate in (True, False):
        with pytest.raises(MapError) as exc:
            read_osm(doc, validate=validate)
        assert "\n" not in str(exc.value)
