"""Run the HTTP API under gunicorn (the production server), programmatically.

``run_http(host, port, workers, config)`` blocks until gunicorn stops. Gunicorn's arbiter needs the main
thread (it installs signal handlers); called from another thread, the same server runs as a child process
(``python -m mapsvc.http``) that is stopped when the caller's process ends.
"""
from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading

from gunicorn.app.base import BaseApplication

# One greenlet per connection (mapsvc/http_worker.py says why, with the measurements): a slow or idle socket
# holds no thread, and ``keepalive`` bounds both the wait between requests and the whole header read.
GUNICORN_DEFAULTS = {
    "worker_class": "mapsvc.http_worker.MapsvcWorker",
    "worker_connections": 1000,
    "keepalive": 5,
    "timeout": 30,
    "graceful_timeout": 10,
    "accesslog": None,     # the app logs its own line (token name, never the token)
    "errorlog": "-",
    "loglevel": "warning",
    "limit_request_line": 4094,
    "limit_request_fields": 50,
    "limit_request_field_size": 8190,
}


def default_workers() -> int:
    """One worker per core (at least 2): measured faster than 2 per core on a 2-core machine, where more
    processes only add context switches (benchmarks/bench_http.py)."""
    return max(2, min(8, os.cpu_count() or 1))


class GunicornApp(BaseApplication):
    """A gunicorn application around any WSGI app factory (the bare-Flask benchmark peer uses it too)."""

    def __init__(self, factory, options: dict):
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key.lower(), value)

    def load(self):
        return self.factory()


def _api_factory(config: dict | None):
    def factory():
        from mapsvc.api import ACCESS_LOG, create_app

        app = create_app(config)
        if app.extensions["mapsvc"]["config"]["ACCESS_LOG"]:
            log = logging.getLogger(ACCESS_LOG)
            if not log.handlers:
                target = app.extensions["mapsvc"]["config"].get("ACCESS_LOG_FILE")
                handler = logging.FileHandler(target) if target else logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
                log.addHandler(handler)
                log.setLevel(logging.INFO)
                log.propagate = False
        return app

    return factory


def run_http(host: str = "127.0.0.1", port: int = 8080, workers: int | None = None, config: dict | None = None,
             **gunicorn_options) -> None:
    if workers is not None and not isinstance(workers, int):
        # `mapsvc serve` passes the NTRIP caster as third argument; the API does not use it.
        workers = None
    workers = workers or default_workers()
    if threading.current_thread() is not threading.main_thread():
        _run_child(host, port, workers, config, gunicorn_options)
        return
    options = {**GUNICORN_DEFAULTS, **gunicorn_options, "bind": f"{host}:{port}", "workers": workers}
    GunicornApp(_api_factory(config), options).run()


def _run_child(host, port, workers, config, gunicorn_options) -> None:
    env = dict(os.environ)
    if config:
        fd, path = tempfile.mkstemp(prefix="mapsvc-api-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        env["MAPSVC_API_CONFIG"] = path
        atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    cmd = [sys.executable, "-m", "mapsvc.http", "--host", host, "--port", str(port), "--workers", str(workers),
           "--options", json.dumps(gunicorn_options)]
    child = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)
    atexit.register(lambda: child.poll() is None and child.terminate())
    child.wait()


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the thread that started it dies (the parent was killed)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mapsvc.http", description="Run the mapsvc HTTP API (gunicorn).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--options", default="{}", help="extra gunicorn settings as JSON")
    args = ap.parse_args(argv)
    run_http(args.host, args.port, args.workers, None, **json.loads(args.options))


if __name__ == "__main__":
    main()
