"""Names in URLs and queries are fullmatched (issue 14 item 6): a trailing newline (`$` in re.match accepts
one) or any other trailer never reaches a store lookup, never answers 200, and always gets a problem document."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import assert_problem

TRAILERS = ["%0A", "%0D%0A", "%00", "%20", "%0B"]
NO_SLASH = st.characters(exclude_characters="/", exclude_categories=("Cs",))  # "/" separates path segments


@pytest.fixture(scope="module")
def tile_id(store):
    return store.manifest("r1")["tiles"][0]["id"]


@pytest.mark.parametrize("trailer", TRAILERS)
def test_trailing_characters_in_names_are_refused(get, tile_id, trailer):
    assert get(f"/v1/releases/r1/tiles/{tile_id}").status_code == 200   # the name without the trailer works
    cases = [
        (f"/v1/releases/r1{trailer}", "vehicle", 404),
        (f"/v1/releases/r1{trailer}/manifest.sig", "vehicle", 404),
        (f"/v1/releases/r1{trailer}/tiles/{tile_id}", "vehicle", 404),
        (f"/v1/releases/r1/tiles/{tile_id}{trailer}", "vehicle", 400),
        (f"/v1/releases/r1/tiles/{tile_id}{trailer}/url", "vehicle", 400),
        (f"/v1/releases/r1/tiles/{tile_id}/rasters/dem{trailer}", "vehicle", 400),
        (f"/v1/releases/r2/delta?from=r1{trailer}", "vehicle", 404),
        (f"/v1/releases/r1/tiles?lat=49.0{trailer}&lon=8.4&radius_m=100", "vehicle", 400),
        (f"/v1/releases/r1/report?format=json&lang=en{trailer}", "surveyor", 400),
        (f"/v1/stations/ST01{trailer}", "admin", 400),
    ]
    for path, role, status in cases:
        assert_problem(get(path, role=role), status)


def test_signing_key_ids_are_fullmatched():
    from tiles.signing import SignatureError, _check_id

    assert _check_id("0" * 32) == "0" * 32
    for bad in ("0" * 32 + "\n", "0" * 31, "0" * 32 + " "):
        with pytest.raises(SignatureError):
            _check_id(bad)


@pytest.fixture(scope="module")
def client(api_home):
    from mapsvc.api import create_app

    app = create_app({"HOME": str(api_home["home"]), "RATE_LIMIT": "1000000 per minute", "ACCESS_LOG": False})
    return app.test_client(), {"Authorization": f"Bearer {api_home['tokens']['vehicle']}"}


@pytest.mark.fuzz
@given(release=st.one_of(st.just("r1"), st.text(NO_SLASH, max_size=12)), tile=st.text(NO_SLASH, max_size=14),
       trailer=st.sampled_from(["", "\n", "\r\n", " "]))
def test_tile_urls_fuzzed(client, store, release, tile, trailer):
    """Any release name and tile id text: 200 only for a real tile of a real release named exactly, else a
    4xx problem document; never a 5xx."""
    c, headers = client
    ids = {str(t["id"]) for t in store.manifest("r1")["tiles"]}
    r = c.get(f"/v1/releases/{quote(release + trailer, safe='')}/tiles/{quote(tile, safe='')}", headers=headers)
    if release == "r1" and not trailer and tile in ids:
        assert r.status_code == 200
        return
    assert 400 <= r.status_code < 500, (release, tile, r.status_code)
    assert r.mimetype == "application/problem+json", (release, tile, r.status_code, r.data[:100])
