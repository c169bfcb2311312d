"""The web console in a real browser (headless Debian Chromium, WebGL on SwiftShader) against a real
`mapsvc serve`, on a shared Lanelet2 map published as r1/r2 and a GEONET station replayed from RINEX.
Screenshots: test-artifacts/console/."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import numpy as np
import pytest
import requests
import shapely

from conftest import GNSS_DIR, mapsvc_cmd
from tests.console.conftest import STATION

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def _sign_in(b, console, role, path="/releases"):
    b.driver.get(f"{console['url']}{path}#token={console['tokens'][role]}")
    b.wait_state("ready", 60)


def _no_other_host(b, console):
    foreign = [u for u in b.foreign_requests(console["url"]) if not u.startswith(("chrome:", "about:"))]
    assert not foreign, foreign[:5]


def _tile_osm(store, release, tile_id):
    from lanelets import read_osm

    return read_osm(store.tile(release, tile_id)[0], name=f"tile {tile_id}")


def _lanelets_in(store, release, box) -> set[str]:
    """Ids of the release's lanelets whose bounds reach into box (west, south, east, north), from the tiles'
    own OSM (not from the GeoJSON the page draws)."""
    view = shapely.box(*box)
    found = set()
    for entry in store.manifest(release)["tiles"]:
        m = _tile_osm(store, release, entry["id"])
        lon, lat = m.lonlat()
        ways = m.way_geometries(lon, lat)
        for r, tags in enumerate(m.rel_tags):
            if tags.get("type") != "lanelet":
                continue
            lo, hi = m.rel_ptr[r], m.rel_ptr[r + 1]
            bounds = [ways[row] for kind, row, role in zip(m.rel_member_kind[lo:hi], m.rel_member_row[lo:hi],
                                                           m.rel_member_role[lo:hi]) if kind == 1 and role in ("left", "right")]
            if any(g is not None and g.intersects(view) for g in bounds):
                found.add(str(m.rel_id[r]))  # ids as text: the page keeps 64-bit ids exact
    return found


def _rendered_lanelets(b) -> tuple[set[str], list[float]]:
    ids, box = b.driver.execute_script("""
        const m = window.mapsvcMap, bb = m.getBounds();
        const ids = [...new Set(m.queryRenderedFeatures({layers: ['lanelets']}).map(f => f.properties.id))];
        return [ids, [bb.getWest(), bb.getSouth(), bb.getEast(), bb.getNorth()]];""")
    return {str(i) for i in ids}, box


def _wait_idle(b):
    b.driver.execute_script("window.__idle = false; window.mapsvcMap.once('idle', () => { window.__idle = true; });"
                            "window.mapsvcMap.triggerRepaint();")
    b.wait_for("window.__idle", 30, "map idle")


def test_browser_has_webgl_on_swiftshader(browser):
    gl = browser.webgl()
    assert gl["ok"], "no WebGL in headless Chromium"
    assert "SwiftShader" in gl["renderer"], gl


def test_release_map_draws_the_releases_lanelets_and_shows_a_clicked_one(browser, console, shot):
    b, store = browser, console["store"]
    _sign_in(b, console, "surveyor", "/releases")
    rows = b.driver.find_elements("css selector", "#releases tbody tr")
    assert [r.get_attribute("data-release") for r in rows] == ["r2", "r1"]
    r1 = b.driver.find_element("css selector", "tr[data-release=r1]")
    assert "verifies" in r1.find_element("css selector", ".signature").text
    assert r1.find_element("css selector", ".verdict").text in ("pass", "fail")
    shot(b, "releases")

    b.driver.get(console["url"] + "/releases/r1")
    b.wait_state("ready", 60)
    shot(b, "map")
    # the whole release in view: every lanelet of the release is on the map
    ids, box = _rendered_lanelets(b)
    want = _lanelets_in(store, "r1", box)
    assert len(want) > 50
    assert ids == want, (len(ids), len(want), sorted(ids ^ want)[:10])
    grid = b.driver.execute_script("return [...document.querySelectorAll('.tile-label')].map(e => +e.dataset.tile)")
    assert sorted(grid) == sorted(t["id"] for t in store.manifest("r1")["tiles"])

    # zoomed in on a lanelet: the lanelets in that smaller view, and a click on it shows its id
    fc = requests.get(f"{console['url']}/v1/releases/r1/tiles/{store.manifest('r1')['tiles'][0]['id']}.geojson",
                      headers={"Authorization": f"Bearer {console['tokens']['surveyor']}"}, timeout=30).json()
    lanelets = [f for f in fc["features"] if f["properties"]["type"] == "lanelet"]
    polys = [shapely.geometry.shape(f["geometry"]) for f in lanelets]
    others = [shapely.geometry.shape(f["geometry"]) for f in fc["features"]
              if f["properties"]["type"] == "regulatory_element"]
    target = None
    for f, poly in sorted(zip(lanelets, polys), key=lambda fp: -fp[1].area):
        inner = poly.buffer(-1.5e-5)  # about a metre inside its bounds
        if inner.is_empty:
            continue
        pt = inner.representative_point()
        if sum(p.contains(pt) for p in polys) == 1 and all(o.distance(pt) > 1e-4 for o in others):
            target = (f["properties"]["id"], pt)
            break
    assert target, "no lanelet to click in the first tile"
    lid, pt = target
    b.driver.execute_script(f"window.mapsvcMap.jumpTo({{center: [{pt.x}, {pt.y}], zoom: 19}});")
    _wait_idle(b)
    ids, box = _rendered_lanelets(b)
    assert ids == _lanelets_in(store, "r1", box) and str(lid) in ids
    # the findings layer is hidden for the click so that only map elements can be hit
    b.driver.execute_script("window.mapsvcMap.setLayoutProperty('findings', 'visibility', 'none');")
    _wait_idle(b)
    from selenium.webdriver import ActionChains

    canvas = b.driver.find_element("css selector", "#map canvas")
    ActionChains(b.driver).move_to_element(canvas).click().perform()
    b.wait_for("document.querySelector('#selected')", 10, "the clicked element's detail")
    sel = b.driver.find_element("id", "selected")
    assert sel.get_attribute("data-type") == "lanelet" and sel.get_attribute("data-id") == str(lid)
    assert f"lanelet {lid}" in sel.text and "subtype" in sel.text
    assert f"lanelet {lid}" in b.driver.find_element("css selector", ".maplibregl-popup").text
    shot(b, "clicked")
    _no_other_host(b, console)


def test_findings_are_markers_with_their_detail(browser, console, shot):
    b = browser
    _sign_in(b, console, "admin", "/releases/r1")
    report = requests.get(f"{console['url']}/v1/releases/r1/report?format=json",
                          headers={"Authorization": f"Bearer {console['tokens']['admin']}"}, timeout=30).json()
    located = [f for f in report["findings"] if "lon" in (f.get("location") or {})]
    # the whole release is in view: every located finding is a marker, coloured by its severity
    drawn = b.driver.execute_script("""
        const seen = new Map();
        for (const f of window.mapsvcMap.queryRenderedFeatures({layers: ['findings']})) seen.set(f.id, f);
        return [...seen.values()].map(f => [f.properties.severity, f.layer.paint['circle-color']]);""")
    assert Counter(s for s, _ in drawn) == Counter(f["severity"] for f in located)
    colours = {s: tuple(c.values()) if isinstance(c, dict) else c for s, c in drawn}
    assert len(set(map(str, colours.values()))) == len(colours)  # one colour per severity
    worst = min(located, key=lambda f: "ABCD".find(f["severity"]) if f["severity"] in "ABCD" else 9)
    b.driver.execute_script(f"window.mapsvcMap.jumpTo({{center: [{worst['location']['lon']}, "
                            f"{worst['location']['lat']}], zoom: 20}});")
    _wait_idle(b)
    from selenium.webdriver import ActionChains

    ActionChains(b.driver).move_to_element(b.driver.find_element("css selector", "#map canvas")).click().perform()
    b.wait_for("document.querySelector('#selected')", 10, "finding detail")
    sel = b.driver.find_element("id", "selected")
    assert sel.get_attribute("data-type") == "finding", sel.text
    here = {f["check"] for f in located if abs(f["location"]["lon"] - worst["location"]["lon"]) < 2e-6
            and abs(f["location"]["lat"] - worst["location"]["lat"]) < 2e-6}
    assert any(f"Finding {c} " in sel.text for c in here), (sel.text, here)
    shot(b, "finding")


def test_diff_colours_the_changed_tiles(browser, console, shot):
    b = browser
    delta = requests.get(f"{console['url']}/v1/releases/r2/delta?from=r1",
                         headers={"Authorization": f"Bearer {console['tokens']['producer']}"}, timeout=30).json()
    assert delta["changed"], "r2 changes one lanelet: some tile must change"
    _sign_in(b, console, "producer", "/releases/r1/diff/r2")
    counts = {e.get_attribute("data-count"): int(e.text)
              for e in b.driver.find_elements("css selector", "#diff-counts [data-count]")}
    assert counts == {"added": len(delta["added"]), "changed": len(delta["changed"]),
                      "removed": len(delta["removed"]), "unchanged": delta["unchanged"]}
    listed = {int(e.get_attribute("data-tile")) for e in b.driver.find_elements("css selector", "#diff-tiles li.changed")}
    assert listed == {t["id"] for t in delta["changed"]}
    png = shot(b, "diff")
    from PIL import Image

    img = Image.open(png).convert("RGB")
    manifest = console["store"].manifest("r2")
    bbox = {t["id"]: t["bbox"] for t in manifest["tiles"]}
    changed = {t["id"] for t in delta["changed"]}

    def tile_colour(tid):
        """The commonest colour of pixels spread over the tile, read from the screenshot."""
        w, s, e, n = bbox[tid]
        pts = [[w + (e - w) * fx, s + (n - s) * fy] for fx in np.linspace(0.1, 0.9, 7) for fy in np.linspace(0.1, 0.9, 7)]
        px = b.driver.execute_script("""
            const m = window.mapsvcMap, r = m.getCanvas().getBoundingClientRect();
            return arguments[0].map(p => { const q = m.project(p); return [q.x + r.left, q.y + r.top]; });""", pts)
        return Counter(img.getpixel((int(x), int(y))) for x, y in px
                       if 0 <= x < img.width and 0 <= y < img.height).most_common(1)[0][0]

    for tid in bbox:
        r, g, bl = tile_colour(tid)
        if tid in changed:
            assert r - bl > 60 and r > g, (tid, (r, g, bl))  # orange
        else:
            assert abs(r - bl) < 40, (tid, (r, g, bl))  # background grey: not coloured
    _no_other_host(b, console)


def test_report_inline_with_pdf_in_english_and_chinese(browser, console, shot):
    b = browser
    for lang, word in (("en", "Verdict"), ("zh", "检验结论")):
        _sign_in(b, console, "surveyor", f"/releases/r1/report?lang={lang}")
        frame = b.driver.find_element("id", "report")
        b.driver.switch_to.frame(frame)
        body = b.driver.find_element("tag name", "body").text
        b.driver.switch_to.default_content()
        assert word in body, body[:200]
        shot(b, f"report-{lang}")
        pdf = b.driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/v1/releases/r1/report?format=pdf&lang=' + arguments[0],
                  {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('mapsvc.token')}})
              .then(r => r.arrayBuffer()).then(a => done(String.fromCharCode(...new Uint8Array(a).slice(0, 5))));
        """, lang)
        assert pdf == "%PDF-"
        assert b.driver.find_element("id", "report-pdf").is_displayed()
    # producers see the console but not reports: the page says so
    b.driver.execute_script("sessionStorage.clear()")
    b.driver.get(f"{console['url']}/releases/r1/report#token={console['tokens']['producer']}")
    b.wait_state("error", 30)
    assert "surveyors and admins" in b.driver.find_element("id", "page-error").text


def test_sign_in_errors_and_roles(browser, console, shot):
    b = browser
    b.driver.get(console["url"] + "/")
    b.wait_state("signin", 30)
    b.driver.find_element("id", "token-input").send_keys("not-a-token")
    b.driver.find_element("css selector", "#signin-form button").click()
    b.wait_for("document.querySelector('#signin-error').textContent", 10, "a sign-in error")
    assert "Sign-in failed" in b.driver.find_element("id", "signin-error").text
    assert not b.driver.find_elements("css selector", "#releases")
    shot(b, "wrong-token")
    # a vehicle token: refused, nothing of the console shown, the token is not kept
    b.driver.get(f"{console['url']}/releases#token={console['tokens']['vehicle']}")
    b.wait_state("signin", 30)
    assert "vehicle" in b.driver.find_element("id", "signin-error").text
    assert not b.driver.find_elements("css selector", "#releases")
    assert b.driver.execute_script("return sessionStorage.getItem('mapsvc.token')") is None
    assert "token=" not in b.driver.current_url
    shot(b, "vehicle")
    # the form signs a producer in; the token stays in session storage across pages
    b.driver.find_element("id", "token-input").send_keys(console["tokens"]["producer"])
    b.driver.find_element("css selector", "#signin-form button").click()
    b.wait_state("ready", 30)
    assert b.driver.find_elements("css selector", "#releases tbody tr")
    b.driver.get(console["url"] + "/stations")
    b.wait_state("ready", 30)
    assert "producer" in b.driver.find_element("id", "who").text
    _no_other_host(b, console)


def test_station_goes_down_when_its_replay_stops(browser, console, shot):
    d = GNSS_DIR / "geonet3034_sept_2021265"
    if not (d / "3034265G.21O").exists():
        pytest.skip("../shared/data/gnss/geonet3034_sept_2021265 absent: a real station replay is needed")
    b = browser
    replay = subprocess.Popen(
        mapsvc_cmd() + ["replay", str(d / "3034265G.21O"), "--nav", str(d / "SEPT2650.21P"), "--loop",
                        "--to", f"ntrip://{STATION['id']}:{STATION['password']}@127.0.0.1:{console['ntrip_port']}/"
                                f"{STATION['mountpoint']}"],
        env=console["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _sign_in(b, console, "admin", "/stations")
        row = f"document.querySelector('tr[data-station={STATION['id']}]')"
        b.wait_for(f"{row} && {row}.dataset.up === 'true' && {row}.textContent.includes('GPS')", 60, "station up")
        text = b.driver.find_element("css selector", f"tr[data-station={STATION['id']}]").text
        assert "1077" in text and "GPS" in text
        lat = b.driver.find_element("css selector", f"tr[data-station={STATION['id']}] .pos").text
        assert len(lat.split(",")[0].split(".")[1]) == 7  # an admin sees the precise position
        shot(b, "up")
    finally:
        os.killpg(replay.pid, signal.SIGTERM)
        replay.wait(15)
    t0 = time.monotonic()
    b.wait_for(f"{row}.dataset.up === 'false'", 20, "station down")
    took = time.monotonic() - t0
    shot(b, "down")
    # silence limit 2 s + the caster's 2 s status period + the page's 1 s poll
    assert took < 8.0, took
    # a surveyor sees the position rounded to 0.01 degree
    _sign_in(b, console, "surveyor", "/stations")
    pos = b.driver.find_element("css selector", f"tr[data-station={STATION['id']}] .pos").text
    assert "±0.01°" in pos and len(pos.split(",")[0].split(".")[1]) == 2
    _no_other_host(b, console)
