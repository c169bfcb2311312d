"""The gunicorn worker `mapsvc serve` runs: gevent (one greenlet per connection), problem documents for the
errors gunicorn answers itself, and a deadline on request bodies.

Why gevent (measured under a slowloris: 300 sockets each sending one header line every 2 s, see
tests/api/test_http_hardening.py; tile speed in benchmarks/bench_http.py):
- gthread hands each accepted socket to a thread that then blocks reading headers: 8 slow sockets take all
  8 threads of 2 workers and /v1/health waits for them (10 s and more, nothing is ever closed);
- uvicorn (httptools or h11) behind a2wsgi keeps answering, but has no header-read timeout: the slow sockets
  stay open for as long as the client likes;
- hypercorn closes them, but serves tiles at about 0.4x gthread;
- gunicorn's gevent worker parks a slow socket in a greenlet (no thread), bounds the whole header read by
  ``keepalive`` seconds (``gevent.Timeout`` around the parser in ``AsyncWorker.handle``) and then closes it.
  Tile GETs stay as fast: 1.09x the same API on gthread at load ~5 (median of interleaved runs), 0.78x at
  load ~12 on this shared 2-core machine; benchmarks/bench_http.py runs both in the same run.
Heavy work (PDF rendering) is not done on request greenlets: reports are rendered when they are made and
served as stored files (mapsvc/reports.py).
"""
from __future__ import annotations

import io
import json
import os

import gevent
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

PROBLEM_TYPE = "application/problem+json"
BODY_TIMEOUT_ENV = "MAPSVC_BODY_TIMEOUT"
DEFAULT_BODY_TIMEOUT = 10.0
MAX_BODY = 64 * 1024  # the API takes no uploads (Flask's MAX_CONTENT_LENGTH is the same)


def problem_json(status: int, reason: str, detail: str = "") -> bytes:
    body = {"type": "about:blank", "title": reason, "status": status}
    if detail:
        body["detail"] = detail[:300]
    return (json.dumps(body) + "\n").encode()


def problem_bytes(status: int, reason: str, detail: str = "") -> bytes:
    """A complete HTTP/1.1 response holding an RFC 9457 problem document; the connection is closed after it."""
    payload = problem_json(status, reason, detail)
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM_TYPE}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode("latin-1")
    return head + payload


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """Stands in for gunicorn.util.write_error (an HTML page) in our workers: same call, a problem document."""
    util.write_nonblock(sock, problem_bytes(int(status_int), reason, mesg))


class BodyDeadline:
    """WSGI middleware: a request body must arrive whole within ``seconds`` (and be at most ``max_bytes``), or
    the request is answered 408. What is left of that body is then skipped by gunicorn's parser, itself bounded
    by the header timeout, so the socket is closed soon after. The header read is bounded by the worker."""

    def __init__(self, app, seconds: float, max_bytes: int = MAX_BODY):
        self.app, self.seconds, self.max_bytes = app, seconds, max_bytes

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not chunked and (not length.isdigit() or int(length) == 0 or int(length) > self.max_bytes):
            return self.app(environ, start_response)  # no body, or one the app refuses (413) unread
        want = self.max_bytes + 1 if chunked else int(length)
        stream, parts, got = environ["wsgi.input"], [], 0
        try:
            with gevent.Timeout(self.seconds):
                while got < want:
                    chunk = stream.read(min(65536, want - got))
                    if not chunk:
                        break
                    parts.append(chunk)
                    got += len(chunk)
        except gevent.Timeout:
            body = problem_json(408, "Request Timeout", f"request body not received within {self.seconds:g} s")
            start_response("408 Request Timeout", [("Content-Type", PROBLEM_TYPE), ("Content-Length", str(len(body)))])
            return [body]
        environ["wsgi.input"] = io.BytesIO(b"".join(parts))
        if chunked:
            environ["CONTENT_LENGTH"] = str(got)
        return self.app(environ, start_response)


class MapsvcWorker(GeventWorker):
    """gunicorn's gevent worker with problem-document errors and the body deadline."""

    def init_process(self):
        # gunicorn answers malformed requests (bad request line, NUL in a header, path over the limit) itself,
        # through util.write_error; in this worker process they get the API's problem documents instead.
        util.write_error = write_problem
        if not self.cfg.keepalive:
            raise RuntimeError("mapsvc's worker needs keepalive > 0: it is also the header-read timeout")
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        self.wsgi = BodyDeadline(self.wsgi, float(os.environ.get(BODY_TIMEOUT_ENV) or DEFAULT_BODY_TIMEOUT))
