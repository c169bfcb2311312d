"""Property-based fuzzers (marker `fuzz`) for tile-id parsing and the names the HTTP API takes from URLs.
Bounded in CI (profile `ci`), long under HYPOTHESIS_PROFILE=fuzz (`make fuzz`)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapsvc.api.problems import Problem
from mapsvc.api.releases import _LANG, TILE_ID, _tile_id
from mapsvc.api.stations import _STATION_ID
from tiles.signing import _KEY_ID
from tiles.grid import grid_to_tile, is_valid_tile, point_to_tile, tile_bbox, tile_grid
from tiles.raster import LAYER_NAME
from tiles.store import RELEASE_NAME

pytestmark = pytest.mark.fuzz

NAMES = {"release": RELEASE_NAME, "tile id": TILE_ID, "station id": _STATION_ID, "layer": LAYER_NAME,
         "language": _LANG, "key id": _KEY_ID}
TRAILERS = ["\n", "\r\n", "\r", " ", "\t", "\x00", "\x0b", "\u2028", "/", "%0A"]


@given(st.integers(-(2**40), 2**40))
def test_tile_ids_parse_or_are_refused(t):
    if not is_valid_tile(t):
        return
    level, gx, gy = (int(v) for v in tile_grid(np.int64(t)))
    assert 0 <= level <= 15 and 0 <= gx < 2 ** (level + 1) and 0 <= gy < max(1, 2**level)
    assert int(grid_to_tile(gx, gy, level)) == t                      # the packing round-trips
    w, s, e, n = tile_bbox(t)
    assert -180 <= w < e <= 180 and -90 <= s < n <= 90
    assert point_to_tile((w + e) / 2, (s + n) / 2, level) == t      # the tile holds its own centre


@given(st.text(max_size=24))
def test_tile_id_text_from_a_url(raw):
    """The API's tile-id parser: an integer id of a real tile, or a 400 problem; never another exception."""
    try:
        tid = _tile_id(raw)
    except Problem as exc:
        assert exc.status == 400
        assert not (TILE_ID.fullmatch(raw) and is_valid_tile(int(raw)))
        return
    assert TILE_ID.fullmatch(raw) and is_valid_tile(tid) and tid == int(raw)
    assert raw.strip() == raw and "\n" not in raw


@pytest.mark.parametrize("what", sorted(NAMES))
@given(data=st.data())
def test_valid_names_with_a_trailer_are_refused(what, data):
    pattern = NAMES[what]
    name = data.draw(st.from_regex(pattern, fullmatch=True), label="name")
    assert pattern.fullmatch(name)
    trailer = data.draw(st.sampled_from(TRAILERS), label="trailer")
    assert not pattern.fullmatch(name + trailer), f"{what} {name + trailer!r} accepted"
    assert not pattern.fullmatch(trailer + name), f"{what} {trailer + name!r} accepted"


@pytest.mark.parametrize("what", sorted(NAMES))
@given(data=st.data())
def test_accepted_names_are_plain(what, data):
    """Whatever a name pattern accepts is printable ASCII without spaces, slashes or line breaks (texts that
    merely contain a valid name, with anything around it, are tried too)."""
    text = data.draw(st.one_of(st.from_regex(NAMES[what]), st.text(max_size=40)), label="text")
    if not NAMES[what].fullmatch(text):
        return
    assert text.isascii() and text.isprintable() and not any(c in text for c in " /\\\n\r\t%")
