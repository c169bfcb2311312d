"""Tile GET throughput and latency (wrk, 32 connections) of `mapsvc serve`'s HTTP API, beside its peers.

Same run, same tiles (the largest shared Lanelet2 map, published at level 15 for more tiles):
- mapsvc: the real API under gunicorn (auth, ETag, access log, rate limit on), default gunicorn settings
  (gevent workers, mapsvc/http_worker.py); beside it the same API on the gthread workers used before issue 14;
- bare Flask: a Flask app returning the same bytes from memory, under the same gunicorn settings;
- nginx static: nginx serving the exported tile files;
- nginx secure_link: the documented production layout (docs/serving.md) -- nginx serves the content-addressed
  blobs from the store, each URL signed and expiring (issued by the API), checked by secure_link.
Targets: mapsvc >= 0.9x bare Flask, >= 0.15x nginx, p99 < 20 ms; secure_link >= 0.8x nginx.

Runnable alone: ``python -m benchmarks.bench_http`` (BENCH_HTTP_SECONDS sets each wrk run, default 4).
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "lanelet2"
LEVEL = 15
CONNECTIONS = 32
WRK_THREADS = 2
ROUNDS = 5
PROD = "nginx secure_link (production layout)"
GTHREAD = "mapsvc on gthread (before issue 14)"
GTHREAD_OPTIONS = {"worker_class": "gthread", "threads": 4}

LUA = r"""
local paths = {}
local auth = os.getenv("BENCH_AUTH")
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  if auth and auth ~= "" then
    return wrk.format("GET", paths[i], {["Authorization"] = auth})
  end
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('JSON{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.timeout))
end
"""

NGINX_CONF = """
{user}
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log {tmp}/nginx-access.log;
  sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path {tmp}/nginx-body; proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fcgi; uwsgi_temp_path {tmp}/nginx-uwsgi; scgi_temp_path {tmp}/nginx-scgi;
  types {{ application/gzip gz; }}
  server {{
    listen 127.0.0.1:{port};
    # plain static files: the same tiles, exported
    location /tiles/ {{ alias {tiles}/; add_header Cache-Control "public, max-age=31536000, immutable"; }}
    # production layout (docs/serving.md): content-addressed blobs behind signed, expiring URLs
    location /blobs/ {{
      secure_link $arg_md5,$arg_expires;
      secure_link_md5 "$secure_link_expires$uri {secret}";
      if ($secure_link = "") {{ return 403; }}
      if ($secure_link = "0") {{ return 410; }}
      alias {blobs}/;
      add_header Cache-Control "public, max-age=31536000, immutable";
    }}
  }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0, ok=(200, 401, 403, 404)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}) before answering {url}")
        try:
            if requests.get(url, timeout=1).status_code in ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no answer from {url}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wrk(base: str, paths: list[str], tmp: Path, name: str, seconds: int, auth: str = "", warmup: bool = True) -> dict:
    plist = tmp / f"paths-{name}.txt"
    plist.write_text("\n".join(paths) + "\n")
    script = tmp / "bench.lua"
    script.write_text(LUA)
    env = {**os.environ, "BENCH_PATHS": str(plist), "BENCH_AUTH": auth}
    # one short warm-up (workers import lazily, caches fill), then the measured run
    if warmup:
        subprocess.run(["wrk", "-t", str(WRK_THREADS), "-c", str(CONNECTIONS), "-d", "1s", "-s", str(script), base],
                       env=env, capture_output=True, check=True)
    out = subprocess.run(["wrk", "-t", str(WRK_THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds}s",
                          "-s", str(script), base], env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("JSON{"))
    r = json.loads(line[4:])
    bad = r["errors_status"] + r["errors_connect"] + r["errors_read"] + r["errors_timeout"]
    return {"peer": name, "req_per_s": r["requests"] / (r["duration_us"] / 1e6),
            "MB_per_s": r["bytes"] / (r["duration_us"] / 1e6) / 1e6,
            "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "errors": bad, "requests": r["requests"]}


def _summary(name: str, runs: list[dict]) -> dict:
    """Best run (highest throughput, with its latencies) and the median throughput of the rounds.

    Why best-of: on a shared 2-core machine, outside load only ever slows a run down, and gunicorn's workers
    sometimes split wrk's 32 keep-alive connections unevenly (all on one worker halves a run); the best run is
    the capacity, the median shows the spread. Both go in the table; the targets use the best runs.
    """
    import statistics

    best = max(runs, key=lambda r: r["req_per_s"])
    row = {"peer": name}
    for key in ("req_per_s", "MB_per_s", "p50_ms", "p90_ms", "p99_ms"):
        row[key] = best[key]
    row["median_req_per_s"] = statistics.median(r["req_per_s"] for r in runs)
    row["req_per_s_runs"] = [round(r["req_per_s"]) for r in runs]
    row["errors"] = sum(r["errors"] for r in runs)
    row["requests"] = sum(r["requests"] for r in runs)
    return row


# -- the bare-Flask peer: same bytes from memory, same gunicorn settings --------------------------------
def bare_app(tiles_dir: str):
    from flask import Flask, Response

    tiles = {int(p.name.split(".")[0]): p.read_bytes() for p in Path(tiles_dir).glob("*.osm.gz")}
    app = Flask("bare")

    @app.get("/v1/releases/<release>/tiles/<tile_id>")
    def tile(release, tile_id):
        return Response(tiles[int(tile_id)], mimetype="application/gzip")

    return app


def serve_bare(port: int, tiles_dir: str, workers: int) -> None:
    from mapsvc.http import GUNICORN_DEFAULTS, GunicornApp

    GunicornApp(lambda: bare_app(tiles_dir),
                {**GUNICORN_DEFAULTS, "bind": f"127.0.0.1:{port}", "workers": workers}).run()


def run() -> dict:
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        return {"title": "HTTP tile serving", "rows": [], "notes": ["wrk or nginx not installed: skipped"]}
    maps = sorted(DATA.glob("*.osm"), key=lambda p: p.stat().st_size) if DATA.is_dir() else []
    if not maps:
        return {"title": "HTTP tile serving", "rows": [], "notes": ["../shared/data/lanelet2 absent: skipped"]}
    src = maps[-1]
    seconds = int(os.environ.get("BENCH_HTTP_SECONDS", "4"))
    from mapsvc.api.securelink import sign
    from mapsvc.http import default_workers
    from mapsvc.pipeline import publish
    from tokens import TokenStore
    from tiles import open_store

    workers = default_workers()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    procs: list[subprocess.Popen] = []
    try:
        home = tmp / "home"
        env = {**os.environ, "MAPSVC_HOME": str(home)}
        os.environ["MAPSVC_HOME"] = str(home)  # publish signs with home()/keys
        try:
            publish(src, "bench", str(home / "store"), LEVEL)
        finally:
            os.environ.pop("MAPSVC_HOME", None)
        store = open_store(home / "store")
        manifest = store.manifest("bench")
        store.export("bench", tmp / "export")
        tokens = TokenStore(home / "tokens.sqlite")
        token = tokens.create("vehicle", "bench-car")
        tokens.close()
        ids = [t["id"] for t in manifest["tiles"]]
        targets = {}  # peer -> (base URL, paths, auth header)

        # mapsvc under gunicorn, as `mapsvc serve` runs it; rate limit on (high budget), access log to a file.
        # Beside it, the same API on the gthread workers it used before issue 14 (what the slowloris-proof
        # worker costs, measured in the same run).
        api_env = {**env, "MAPSVC_RATE_LIMIT": "100000000 per minute", "MAPSVC_ACCESS_LOG": "1",
                   "MAPSVC_ACCESS_LOG_FILE": str(tmp / "mapsvc-access.log")}
        for name, options in (("mapsvc", {}), (GTHREAD, GTHREAD_OPTIONS)):
            port = _free_port()
            p = subprocess.Popen([sys.executable, "-m", "mapsvc.http", "--port", str(port), "--workers",
                                  str(workers), "--options", json.dumps(options)],
                                 env=api_env, cwd=REPO, stderr=subprocess.DEVNULL)
            procs.append(p)
            _wait_http(f"http://127.0.0.1:{port}/v1/health", p)
            check = requests.get(f"http://127.0.0.1:{port}/v1/releases/bench/tiles/{ids[0]}",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=5)
            assert check.status_code == 200 and check.headers["ETag"] == f'"{manifest["tiles"][0]["sha256"]}"'
            targets[name] = (f"http://127.0.0.1:{port}", [f"/v1/releases/bench/tiles/{i}" for i in ids],
                             f"Bearer {token}")

        # bare Flask, same gunicorn settings, bytes from memory
        port = _free_port()
        p = subprocess.Popen([sys.executable, "-c", "import sys; from benchmarks.bench_http import serve_bare; "
                              "serve_bare(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))",
                              str(port), str(tmp / "export" / "tiles"), str(workers)],
                             env=env, cwd=REPO, stderr=subprocess.DEVNULL)
        procs.append(p)
        _wait_http(f"http://127.0.0.1:{port}/v1/releases/bench/tiles/{ids[0]}", p, ok=(200,))
        targets["bare Flask"] = (f"http://127.0.0.1:{port}", [f"/v1/releases/bench/tiles/{i}" for i in ids], "")

        # nginx: static files, and the signed-URL production layout
        port = _free_port()
        secret = os.urandom(16).hex()
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(
            # as root, nginx workers would drop to "nobody", which cannot read the 0600 store files
            user=f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else "",
            workers=workers, tmp=tmp, port=port, tiles=tmp / "export" / "tiles",
            blobs=store.blob_dir, secret=secret))
        p = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")],
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        _wait_http(f"http://127.0.0.1:{port}/tiles/{ids[0]}.osm.gz", p, ok=(200,))
        targets["nginx static"] = (f"http://127.0.0.1:{port}", [f"/tiles/{i}.osm.gz" for i in ids], "")
        signed = [sign("/blobs", t["sha256"], secret, 3600)[0] for t in manifest["tiles"]]
        ok = requests.get(f"http://127.0.0.1:{port}{signed[0]}", timeout=5)
        bad = requests.get(f"http://127.0.0.1:{port}{signed[0].replace('md5=', 'md5=x')}", timeout=5)
        assert ok.status_code == 200 and ok.content == store.blob(manifest["tiles"][0]["sha256"])
        assert bad.status_code == 403
        targets[PROD] = (f"http://127.0.0.1:{port}", signed, "")

        # rounds interleave the peers, so load from elsewhere on a shared machine hits them alike; medians
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        for rnd in range(ROUNDS):
            for name, (base, paths, auth) in targets.items():
                runs[name].append(_wrk(base, paths, tmp, name, seconds, auth, warmup=rnd == 0))
        rows = [_summary(name, rs) for name, rs in runs.items()]
    finally:
        for p in procs:
            _stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    by = {r["peer"]: r for r in rows}
    api, bare, ngx = by["mapsvc"], by["bare Flask"], by["nginx static"]
    prod = by[PROD]
    for r in rows:
        r["x_nginx"] = r["req_per_s"] / ngx["req_per_s"]
        r["x_bare_flask"] = r["req_per_s"] / bare["req_per_s"]
        r["x_nginx_median"] = r["median_req_per_s"] / ngx["median_req_per_s"]
        r["x_bare_flask_median"] = r["median_req_per_s"] / bare["median_req_per_s"]
    size = sum(t["bytes"] for t in manifest["tiles"]) / len(manifest["tiles"])
    checks = {
        "mapsvc >= 0.9x bare Flask": api["x_bare_flask"] >= 0.9,
        "mapsvc >= 0.15x nginx": api["x_nginx"] >= 0.15,
        "mapsvc p99 < 20 ms": api["p99_ms"] < 20,
        "secure_link layout >= 0.8x nginx": prod["x_nginx"] >= 0.8,
        "no errors": all(r["errors"] == 0 for r in rows),
    }
    return {
        "title": f"HTTP tile GET, wrk {CONNECTIONS} connections, best of {ROUNDS} interleaved {seconds}s runs "
                 f"({src.name}, level {LEVEL}: {len(ids)} tiles, mean {size / 1024:.0f} KiB)",
        "rows": rows,
        "targets": checks,
        "notes": [f"{k}: {'met' if v else 'NOT met'}" for k, v in checks.items()]
        + [f"median of rounds: mapsvc {api['x_bare_flask_median']:.2f}x bare Flask, {api['x_nginx_median']:.3f}x nginx; "
           f"secure_link {prod['x_nginx_median']:.2f}x nginx"]
        + [f"mapsvc on gevent is {api['req_per_s'] / by[GTHREAD]['req_per_s']:.2f}x the same API on gthread "
           f"(median {api['median_req_per_s'] / by[GTHREAD]['median_req_per_s']:.2f}x)"]
        + [f"gunicorn: {workers} gevent workers (mapsvc.http defaults) for mapsvc and bare Flask; "
           f"nginx worker_processes {workers}; wrk -t{WRK_THREADS}; all on the same {os.cpu_count()}-core machine",
           "mapsvc: bearer-token auth, rate limit (memory storage), ETag, access log to a file all enabled"],
    }


if __name__ == "__main__":
    res = run()
    from benchmarks.__main__ import print_table

    print_table(res["title"], res["rows"])
    for note in res.get("notes", []):
        print(f"  - {note}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_http.json").write_text(json.dumps(res, indent=1, default=str))
