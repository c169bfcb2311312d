// The mapsvc web console: one page script for every console route. It signs in with an API token (kept in
// sessionStorage, or taken from a #token=... fragment) and reads everything from /v1 with it, so the API's
// role rules are the console's. No framework: the DOM and MapLibre GL JS (served from this host) suffice.
"use strict";

const TOKEN_KEY = "mapsvc.token";
const STATION_POLL_MS = 1000; // the issue allows 2 s at most; the caster writes its status every 2 s

const LANELET_COLOURS = ["match", ["get", "_subtype"],
  "road", "#8fb8de", "highway", "#6f9fd8", "road_shoulder", "#c9c9c9", "crosswalk", "#f6c28b",
  "walkway", "#b8dfb0", "bicycle_lane", "#c7b8e8", "play_street", "#e8d8a0", "emergency_lane", "#f2a0a0",
  "bus_lane", "#e0b0d8", "exit", "#9fd0d0", "stairs", "#d8c8b8", "#b0b0b0"];
const LINE_COLOURS = ["match", ["get", "_kind"],
  "stop_line", "#d7191c", "traffic_light", "#ff7f00", "traffic_sign", "#1f78b4", "curbstone", "#7a5a2a",
  "virtual", "#9a9a9a", "road_border", "#444444", "guard_rail", "#666666", "pedestrian_marking", "#e6a000",
  "zebra_marking", "#e6a000", "#303030"];
const LINE_WIDTHS = ["match", ["get", "_kind"], "stop_line", 4, "line_thick", 2.5, "traffic_light", 3,
  "traffic_sign", 3, "virtual", 1, 1.5];
const REGELEM_COLOURS = ["match", ["get", "_subtype"], "traffic_light", "#ff2d00", "right_of_way", "#ff9f00",
  "traffic_sign", "#1f78b4", "speed_limit", "#7b3294", "all_way_stop", "#a50026", "#555555"];
const BOUNDS_MINZOOM = 14;
const MARK_KINDS = ["stop_line", "traffic_light", "traffic_sign"];  // line strings drawn at every zoom
const SEVERITY_COLOURS = ["match", ["get", "severity"], "A", "#c00000", "B", "#ff6a00", "C", "#f2c200",
  "D", "#2c7bb6", "#888888"];
const DIFF_COLOURS = {added: "#1a9641", changed: "#e66101", removed: "#d7191c", unchanged: "#cccccc"};
const DASHED = new Set(["dashed", "solid_dashed", "dashed_solid"]);

// -- token and API ---------------------------------------------------------------------------------
function token() { return sessionStorage.getItem(TOKEN_KEY); }

function takeFragmentToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search); // the token leaves the address bar
  }
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, {as = "json", headers = {}} = {}) {
  const resp = await fetch(path, {headers: {...headers, Authorization: "Bearer " + token()}});
  if (!resp.ok) {
    let detail = resp.statusText;
    try { const p = await resp.json(); detail = p.detail || p.title || detail; } catch (e) { /* not JSON */ }
    if (resp.status === 401) { signOut("Sign-in failed: " + detail); }
    throw new ApiError(resp.status, detail);
  }
  if (as !== "json") return as === "text" ? resp.text() : resp.blob();
  const text = await resp.text();
  // the reviver is slow on megabytes of coordinates: only used when the text holds a 16+ digit integer
  return /[0-9]{16}/.test(text) ? JSON.parse(text, exactIntegers) : JSON.parse(text);
}

// OSM ids are 64-bit: beyond 2^53 a JS number is not the id any more, so such integers stay their digits
function exactIntegers(key, value, context) {
  return typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?[0-9]+$/.test(context.source)
    ? context.source : value;
}

// -- DOM helpers -----------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const $ = (sel) => document.querySelector(sel);
function fmtBytes(n) {
  if (n == null) return "";
  const u = ["B", "kB", "MB", "GB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function setState(s) { document.body.dataset.state = s; }

// -- sign-in ---------------------------------------------------------------------------------------
function showSignIn(message) {
  $("#main").replaceChildren();
  $("#nav").hidden = true; $("#signout").hidden = true; $("#who").textContent = "";
  $("#signin").hidden = false;
  $("#signin-error").textContent = message || "";
  setState("signin");
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
}

async function signIn() {
  let me;
  try {
    me = await api("/v1/whoami");
  } catch (e) {
    if (e.status !== 401) showSignIn("Sign-in failed: " + e.message);
    return null;
  }
  if (!me.console) {
    signOut(`Sign-in refused: a ${me.role} token has no access to the console.`);
    return null;
  }
  $("#signin").hidden = true;
  $("#nav").hidden = false; $("#signout").hidden = false;
  $("#who").textContent = `${me.name} (${me.role})`;
  return me;
}

// -- pages -----------------------------------------------------------------------------------------
const ROUTES = [
  [/^\/$/, () => { history.replaceState(null, "", "/releases"); return releasesPage(); }],
  [/^\/releases\/?$/, releasesPage],
  [/^\/releases\/([^/]+)\/diff\/([^/]+)$/, diffPage],
  [/^\/releases\/([^/]+)\/report$/, reportPage],
  [/^\/releases\/([^/]+)$/, releasePage],
  [/^\/stations\/?$/, stationsPage],
];

let ME = null;

async function route() {
  for (const a of document.querySelectorAll("#nav a")) {
    a.toggleAttribute("aria-current", location.pathname.startsWith(a.getAttribute("href")));
  }
  for (const [re, page] of ROUTES) {
    const m = re.exec(location.pathname);
    if (m) {
      try { await page(...m.slice(1).map(decodeURIComponent)); }
      catch (e) {
        if (e.status === 401) return;
        $("#main").replaceChildren(el("p", {class: "error", id: "page-error"}, e.message));
        setState("error");
      }
      return;
    }
  }
  $("#main").replaceChildren(el("p", {class: "error"}, "No such console page."));
}

async function releasesPage() {
  setState("loading");
  const {releases} = await api("/v1/console/releases");
  const rows = releases.slice().reverse().map((r, i, all) => {
    const prev = all[i + 1];
    const sig = r.signature.verified
      ? el("span", {class: "ok", title: r.signature.detail}, "✓ verifies")
      : el("span", {class: "bad", title: r.signature.detail}, "✗ " + r.signature.detail);
    const rep = r.report;
    return el("tr", {"data-release": r.name},
      el("td", {}, el("a", {href: `/releases/${encodeURIComponent(r.name)}`}, r.name)),
      el("td", {}, (r.created || "").replace("T", " ").replace("Z", " UTC")),
      el("td", {class: "num"}, r.tiles),
      el("td", {class: "num"}, fmtBytes(r.bytes)),
      el("td", {class: "signature"}, sig),
      el("td", {}, r.frame || el("span", {class: "muted"}, "not stated")),
      el("td", {}, r.offset_provider || el("span", {class: "muted"}, "none")),
      el("td", {class: "verdict"}, rep ? el("span", {class: rep.result === "pass" ? "ok" : "bad"}, rep.result || "?")
        : el("span", {class: "muted"}, "no report")),
      el("td", {class: "grade"}, rep ? `${rep.grade ?? ""} (${rep.score ?? ""})` : ""),
      el("td", {}, rep ? el("a", {href: `/releases/${encodeURIComponent(r.name)}/report`}, "report") : "",
        " ", prev ? el("a", {href: `/releases/${encodeURIComponent(prev.name)}/diff/${encodeURIComponent(r.name)}`},
          `diff from ${prev.name}`) : ""));
  });
  $("#main").replaceChildren(el("div", {class: "page"},
    el("h1", {}, `Releases (${releases.length})`),
    el("table", {id: "releases"},
      el("thead", {}, el("tr", {}, ["Release", "Published", "Tiles", "Size", "Signature", "Frame",
        "Offset provider", "Verdict", "Grade (score)", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows))));
  setState("ready");
}

// -- maps ------------------------------------------------------------------------------------------
function startWorkers() {
  maplibregl.setWorkerUrl("/console/maplibre-gl-worker.js");
  maplibregl.prewarm();
}

function newMap(container) {
  startWorkers();
  // no base map: a plain background; everything drawn is the release's own data
  const map = new maplibregl.Map({
    container, attributionControl: false, maxZoom: 22, fadeDuration: 0,
    style: {version: 8, sources: {}, layers: [{id: "background", type: "background",
      paint: {"background-color": "#f4f4f0"}}]},
  });
  map.addControl(new maplibregl.NavigationControl({showCompass: false}));
  map.addControl(new maplibregl.ScaleControl({unit: "metric"}));
  window.mapsvcMap = map;
  return map;
}

function loaded(map) { return new Promise((ok) => (map.loaded() ? ok() : map.once("load", ok))); }

function whenIdle(map) { return new Promise((ok) => map.once("idle", ok)); }

function tileGrid(entries, status) {
  return {type: "FeatureCollection", features: entries.map((t) => {
    const [w, s, e, n] = t.bbox;
    return {type: "Feature", id: t.id, properties: {id: t.id, status: status ? status(t.id) : "tile"},
      geometry: {type: "Polygon", coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}};
  })};
}

function boundsOf(entries) {
  const b = [180, 90, -180, -90];
  for (const t of entries) {
    b[0] = Math.min(b[0], t.bbox[0]); b[1] = Math.min(b[1], t.bbox[1]);
    b[2] = Math.max(b[2], t.bbox[2]); b[3] = Math.max(b[3], t.bbox[3]);
  }
  return [[b[0], b[1]], [b[2], b[3]]];
}

function addGrid(map, grid, colours) {
  map.addSource("grid", {type: "geojson", data: grid});
  map.addLayer({id: "grid-fill", type: "fill", source: "grid", paint: {
    "fill-color": colours ? ["match", ["get", "status"], ...Object.entries(colours).flat(), "#ffffff"] : "#ffffff",
    "fill-opacity": colours ? ["match", ["get", "status"], "unchanged", 0.08, 0.45] : 0}});
  map.addLayer({id: "grid-line", type: "line", source: "grid",
    paint: {"line-color": "#7a8a99", "line-width": 1, "line-dasharray": [3, 2]}});
  // tile ids as HTML labels: the map has no glyph server (nothing from another host), so no symbol text
  for (const f of grid.features) {
    const c = f.geometry.coordinates[0];
    const label = el("div", {class: "tile-label", "data-tile": f.properties.id}, f.properties.id);
    new maplibregl.Marker({element: label, anchor: "top-left"}).setLngLat(c[3]).addTo(map);
  }
}

// The map's features carry only what the style and a click need (id, type, flat style keys); the rest (OSM
// tags, bounds, members) stays on this side, looked up on click: the worker then copies and indexes far less.
const DETAILS = new Map();

function styleProps(f) {
  const p = f.properties, t = p.tags || {};
  DETAILS.set(p.type + ":" + p.id, p);
  f.properties = {id: p.id, type: p.type, _subtype: t.subtype || "", _kind: t.type || "",
    _dashed: p.type === "line_string" && (DASHED.has(t.subtype) || t.type === "virtual")};
  return f;
}

async function loadTiles(release, entries, progress) {
  const seen = new Set(), features = [];
  let done = 0;
  const one = async (t) => {
    const fc = await api(`/v1/releases/${encodeURIComponent(release)}/tiles/${t.id}.geojson`);
    for (const f of fc.features) {
      // a lanelet touching several tiles is in each of them (tiles are self-contained): draw it once
      const key = f.properties.type + ":" + f.properties.id;
      if (seen.has(key)) continue;
      seen.add(key);
      f.id = features.length;
      features.push(styleProps(f));
    }
    progress(++done);
  };
  await Promise.all(entries.map(one));
  return {type: "FeatureCollection", features};
}

function addMapLayers(map, data) {
  // a low simplification tolerance: at overview zooms the default one drops small lanelets (crosswalk pieces)
  map.addSource("map", {type: "geojson", data, tolerance: 0.2, buffer: 32});
  map.addLayer({id: "areas", type: "fill", source: "map", filter: ["==", ["get", "type"], "area"],
    paint: {"fill-color": "#d9d2c5", "fill-opacity": 0.6, "fill-antialias": false}});
  map.addLayer({id: "lanelets", type: "fill", source: "map", filter: ["==", ["get", "type"], "lanelet"],
    // no fill outline: the bounds are drawn as lines of their own (and the worker has less to build)
    paint: {"fill-color": LANELET_COLOURS, "fill-opacity": 0.7, "fill-antialias": false}});
  // bounds from zoom 14: below it a 3.5 m lane is under a pixel wide, its bounds only cover it, and a city's worth
  // of them would cost the first render of an overview several hundred milliseconds; stop lines, traffic
  // lights and signs (line strings too) are drawn at every zoom
  const line = ["==", ["get", "type"], "line_string"];
  const mark = ["in", ["get", "_kind"], ["literal", MARK_KINDS]];
  map.addLayer({id: "lines-solid", type: "line", source: "map", minzoom: BOUNDS_MINZOOM,
    filter: ["all", line, ["!", mark], ["!", ["get", "_dashed"]]],
    paint: {"line-color": LINE_COLOURS, "line-width": LINE_WIDTHS}});
  map.addLayer({id: "lines-dashed", type: "line", source: "map", minzoom: BOUNDS_MINZOOM,
    filter: ["all", line, ["!", mark], ["get", "_dashed"]],
    paint: {"line-color": LINE_COLOURS, "line-width": LINE_WIDTHS, "line-dasharray": [3, 3]}});
  map.addLayer({id: "line-marks", type: "line", source: "map", filter: ["all", line, mark],
    paint: {"line-color": LINE_COLOURS, "line-width": LINE_WIDTHS}});
  map.addLayer({id: "regulatory-elements", type: "circle", source: "map",
    filter: ["==", ["get", "type"], "regulatory_element"],
    paint: {"circle-color": REGELEM_COLOURS, "circle-radius": 6, "circle-stroke-color": "#fff",
      "circle-stroke-width": 1.5}});
}

function detailTable(obj) {
  return el("table", {class: "tags"}, Object.entries(obj).map(([k, v]) =>
    el("tr", {}, el("td", {}, k), el("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v)))));
}

// what a click shows: the topmost element, findings and regulatory elements before lines before surfaces
const CLICK_LAYERS = ["findings", "regulatory-elements", "line-marks", "lines-solid", "lines-dashed", "lanelets",
  "areas"];

function onClickShow(map, panel) {
  map.on("click", (e) => {
    const layers = CLICK_LAYERS.filter((l) => map.getLayer(l));
    const hits = map.queryRenderedFeatures(e.point, {layers});
    hits.sort((a, b) => layers.indexOf(a.layer.id) - layers.indexOf(b.layer.id));
    const f = hits[0];
    if (!f) return;
    const p = f.properties;
    let title, body;
    if (f.layer.id === "findings") {
      title = `Finding ${p.check} (${p.severity})`;
      body = detailTable({check: p.check, severity: p.severity, element: p.element, kind: p.kind, id: p.id,
        detail: p.detail});
    } else {
      const full = DETAILS.get(p.type + ":" + p.id) || p;
      title = `${p.type} ${p.id}`;
      const extra = {};
      for (const k of ["left", "right", "regulatory_elements", "members"]) {
        if (full[k] !== undefined) extra[k] = full[k];
      }
      body = el("div", {}, detailTable(extra), el("h3", {}, "tags"), detailTable(full.tags || {}));
    }
    const box = el("div", {id: "selected", "data-type": p.type || "finding", "data-id": p.id},
      el("h2", {}, title), body);
    panel.replaceChildren(box);
    new maplibregl.Popup({closeButton: true, maxWidth: "22em"}).setLngLat(e.lngLat)
      .setDOMContent(el("div", {class: "popup", "data-id": p.id}, el("b", {}, title))).addTo(map);
  });
  for (const l of CLICK_LAYERS) {
    map.on("mouseenter", l, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", l, () => { map.getCanvas().style.cursor = ""; });
  }
}

function legend() {
  const row = (colour, text, dashed) => el("div", {}, el("span", {style: `background:${colour};${dashed ?
    "border-style:dashed" : ""}`}), text);
  return el("div", {class: "legend"}, el("h2", {}, "Legend"),
    row("#8fb8de", "lanelet: road"), row("#f6c28b", "lanelet: crosswalk"), row("#b8dfb0", "lanelet: walkway"),
    row("#c9c9c9", "lanelet: shoulder / other"), row("#303030", "bound: solid line"),
    row("#ffffff", "bound: dashed line / virtual", true), row("#d7191c", "stop line"),
    row("#ff2d00", "regulatory element: traffic light"), row("#ff9f00", "regulatory element: right of way"),
    row("#1f78b4", "traffic sign"), row("#c00000", "finding A"), row("#ff6a00", "finding B"),
    row("#f2c200", "finding C"), row("#2c7bb6", "finding D"));
}

async function releasePage(release) {
  setState("loading");
  const manifest = await api(`/v1/releases/${encodeURIComponent(release)}`);
  const entries = manifest.tiles;
  const status = el("div", {id: "map-status"}, "loading tiles…");
  // the tiles are on their way before the map is built
  const dataP = loadTiles(release, entries, (n) => { status.textContent = `tiles ${n}/${entries.length}`; });
  const panel = el("div", {id: "detail"}, el("p", {class: "muted"}, "Click an element to see its id and tags."));
  const mapDiv = el("div", {class: "map", id: "map"});
  $("#main").replaceChildren(el("div", {class: "toolbar"},
    el("b", {}, `Release ${release}`), status,
    el("a", {href: `/releases/${encodeURIComponent(release)}/report`}, "report")),
  el("div", {class: "mapwrap"}, mapDiv, el("div", {class: "side"}, panel, legend())));
  const map = newMap(mapDiv);
  map.fitBounds(boundsOf(entries), {padding: 30, animate: false});
  const findingsP = ME.permissions.includes("read_reports")
    ? api(`/v1/releases/${encodeURIComponent(release)}/report?format=json`).catch(() => null) : Promise.resolve(null);
  await loaded(map);
  addGrid(map, tileGrid(entries));
  const data = await dataP;
  performance.mark("mapsvc-tiles-loaded");
  addMapLayers(map, data);
  const report = await findingsP;
  const findings = report ? report.findings.filter((f) => f.location && f.location.lon !== undefined) : [];
  map.addSource("findings", {type: "geojson", data: {type: "FeatureCollection", features: findings.map((f, i) => ({
    type: "Feature", id: i, geometry: {type: "Point", coordinates: [f.location.lon, f.location.lat]},
    properties: {check: f.check, severity: f.severity, element: f.element, kind: f.kind, id: f.id,
      detail: f.detail}}))}});
  map.addLayer({id: "findings", type: "circle", source: "findings", paint: {"circle-color": SEVERITY_COLOURS,
    "circle-radius": ["match", ["get", "severity"], "A", 7, "B", 6, 4], "circle-stroke-color": "#000",
    "circle-stroke-width": 0.5, "circle-opacity": 0.85}});
  onClickShow(map, panel);
  performance.mark("mapsvc-layers-added");
  await whenIdle(map);
  const count = (t) => data.features.filter((f) => f.properties.type === t).length;
  status.textContent = `${entries.length} tiles · ${count("lanelet")} lanelets · ${count("area")} areas · ` +
    `${count("regulatory_element")} regulatory elements · ${findings.length} findings` +
    (report ? "" : " (report not available to this role)");
  // since navigation started: page, scripts, sign-in, manifest, every tile's GeoJSON, until the map is idle
  window.mapsvcRenderMs = performance.now();
  setState("ready");
}

async function diffPage(a, b) {
  setState("loading");
  const enc = encodeURIComponent;
  const [delta, ma, mb] = await Promise.all([api(`/v1/releases/${enc(b)}/delta?from=${enc(a)}`),
    api(`/v1/releases/${enc(a)}`), api(`/v1/releases/${enc(b)}`)]);
  const status = {};
  for (const t of delta.added) status[t.id] = "added";
  for (const t of delta.changed) status[t.id] = "changed";
  for (const id of delta.removed) status[id] = "removed";
  const byId = new Map();
  for (const t of ma.tiles) byId.set(t.id, t);
  for (const t of mb.tiles) byId.set(t.id, t);
  const entries = [...byId.values()];
  const counts = el("div", {class: "counts", id: "diff-counts"},
    el("span", {class: "added"}, "added ", el("b", {"data-count": "added"}, delta.added.length)), " · ",
    el("span", {class: "changed"}, "changed ", el("b", {"data-count": "changed"}, delta.changed.length)), " · ",
    el("span", {class: "removed"}, "removed ", el("b", {"data-count": "removed"}, delta.removed.length)), " · ",
    el("span", {}, "unchanged ", el("b", {"data-count": "unchanged"}, delta.unchanged)));
  const mapDiv = el("div", {class: "map", id: "map"});
  const list = el("ul", {id: "diff-tiles"}, entries.filter((t) => status[t.id]).map((t) =>
    el("li", {class: status[t.id], "data-tile": t.id}, `${t.id}: ${status[t.id]}`)));
  $("#main").replaceChildren(el("div", {class: "toolbar"}, el("b", {}, `Diff ${a} → ${b}`), counts),
    el("div", {class: "mapwrap"}, mapDiv, el("div", {class: "side"}, el("h2", {}, "Tiles"), list)));
  const map = newMap(mapDiv);
  map.fitBounds(boundsOf(entries), {padding: 30, animate: false});
  await loaded(map);
  addGrid(map, tileGrid(entries, (id) => status[id] || "unchanged"), DIFF_COLOURS);
  // the newer release's lanelets over the coloured grid, for orientation
  const data = await loadTiles(b, mb.tiles.filter((t) => status[t.id]), () => {});
  addMapLayers(map, data);
  onClickShow(map, el("div"));
  await whenIdle(map);
  setState("ready");
}

async function reportPage(release) {
  setState("loading");
  const enc = encodeURIComponent(release);
  const lang = new URLSearchParams(location.search).get("lang") === "zh" ? "zh" : "en";
  const frame = el("iframe", {class: "report-frame", id: "report", sandbox: "", title: `Report of ${release}`});
  const pdf = el("button", {type: "button", id: "report-pdf"}, `Download PDF (${lang === "zh" ? "中文" : "English"})`);
  const langs = el("span", {}, "Language: ", el("a", {href: "?lang=en"}, "English"), " · ", el("a", {href: "?lang=zh"}, "中文"));
  $("#main").replaceChildren(el("div", {class: "toolbar"}, el("b", {}, `Report of ${release}`), langs, pdf,
    el("a", {href: `/releases/${enc}`}, "map")), frame);
  let html;
  try {
    html = await api(`/v1/releases/${enc}/report?format=html&lang=${lang}`, {as: "text"});
  } catch (e) {
    if (e.status === 403) throw new Error("Reports are for surveyors and admins: " + e.message);
    throw e;
  }
  frame.srcdoc = html; // sandboxed: the report's own markup, no script, nothing fetched
  pdf.onclick = async () => {
    const blob = await api(`/v1/releases/${enc}/report?format=pdf&lang=${lang}`, {as: "blob"});
    const a = el("a", {href: URL.createObjectURL(blob), download: `${release}-report-${lang}.pdf`});
    document.body.append(a); a.click(); a.remove();
  };
  setState("ready");
}

// -- stations --------------------------------------------------------------------------------------
function stationRow(st) {
  const sats = Object.entries(st.satellites || {}).map(([k, n]) => `${k} ${n}`).join(", ");
  const msgs = Object.entries(st.message_types || {}).map(([t, m]) =>
    `${t}${m.rate_hz ? ` @ ${m.rate_hz} Hz` : ""}`).join(", ");
  const pos = st.lat !== undefined ? `${st.lat.toFixed(7)}, ${st.lon.toFixed(7)}, ${st.height} m`
    : `${st.approx_lat?.toFixed(2)}, ${st.approx_lon?.toFixed(2)} (±0.01°)`;
  return el("tr", {class: st.up ? "up" : "down", "data-station": st.id, "data-up": String(!!st.up)},
    el("td", {}, st.id), el("td", {}, st.mountpoint || ""),
    el("td", {class: "state"}, st.up ? "up" : "down"),
    el("td", {class: "num"}, st.age_s == null ? "—" : st.age_s.toFixed(1) + " s"),
    el("td", {class: "num"}, st.latency_s == null ? "—" : st.latency_s.toFixed(2) + " s"),
    el("td", {}, sats || "—"), el("td", {}, msgs || "—"),
    el("td", {class: "num"}, st.clients ?? 0), el("td", {class: "pos"}, pos));
}

async function stationsPage() {
  setState("loading");
  const mapDiv = el("div", {class: "map", id: "map"});
  const info = el("span", {id: "stations-info"});
  const body = el("tbody");
  $("#main").replaceChildren(el("div", {class: "stations-page"}, el("div", {class: "toolbar"},
    el("b", {}, "Reference stations"), info), mapDiv, el("div", {class: "page"}, el("table", {id: "stations"},
    el("thead", {}, el("tr", {}, ["Station", "Mountpoint", "State", "Age", "Latency", "Satellites",
      "Messages (rate)", "Clients", "Position"].map((h) => el("th", {}, h)))), body))));
  const map = newMap(mapDiv);
  await loaded(map);
  map.addSource("stations", {type: "geojson", data: {type: "FeatureCollection", features: []}});
  map.addLayer({id: "stations", type: "circle", source: "stations", paint: {
    "circle-color": ["case", ["get", "up"], "#1a9641", "#d7191c"], "circle-radius": 9,
    "circle-stroke-color": "#fff", "circle-stroke-width": 2}});
  let fitted = false;
  const refresh = async () => {
    const doc = await api("/v1/stations");
    const stations = doc.stations || [];
    body.replaceChildren(...stations.map(stationRow));
    info.textContent = `${stations.filter((s) => s.up).length} of ${stations.length} up · caster ` +
      (doc.caster_running ? "running" : "not running") + ` · updated ${new Date().toLocaleTimeString()}`;
    const feats = stations.map((s) => ({type: "Feature", properties: {id: s.id, up: !!s.up},
      geometry: {type: "Point", coordinates: [s.lon ?? s.approx_lon, s.lat ?? s.approx_lat]}}));
    map.getSource("stations").setData({type: "FeatureCollection", features: feats});
    if (!fitted && feats.length) {
      const b = boundsOf(feats.map((f) => ({bbox: [...f.geometry.coordinates, ...f.geometry.coordinates]})));
      map.fitBounds(b, {padding: 60, maxZoom: 9, animate: false});
      fitted = true;
    }
    setState("ready");
  };
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), STATION_POLL_MS);
  window.addEventListener("pagehide", () => clearInterval(timer));
}

// -- start -----------------------------------------------------------------------------------------
async function start() {
  takeFragmentToken();
  // a #token= link opened on a page already showing: sign in again with it
  window.addEventListener("hashchange", () => { if (/token=/.test(location.hash)) location.reload(); });
  $("#signout").onclick = () => signOut("Signed out.");
  $("#signin-form").onsubmit = async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
    $("#token-input").value = "";
    ME = await signIn();
    if (ME) await route();
  };
  if (!token()) { showSignIn(); return; }
  // the map pages' workers load and start while the page signs in and fetches its data
  if (/^\/(releases\/[^/]+|stations)/.test(location.pathname)) startWorkers();
  ME = await signIn();
  if (ME) await route();
}

start();
