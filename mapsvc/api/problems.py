"""RFC 9457 problem documents for every error the API returns (never an HTML error page)."""
from __future__ import annotations

import json
import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE = "application/problem+json"
log = logging.getLogger("mapsvc.api")


class Problem(Exception):
    """Raise from a view to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str = "", headers: dict | None = None, **extra):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.headers, self.extra = status, title, detail, headers or {}, extra


def problem_response(status: int, title: str, detail: str = "", headers: dict | None = None, **extra) -> Response:
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.path if request else None
    body.update(extra)
    resp = Response(json.dumps(body) + "\n", status=status, mimetype=PROBLEM_TYPE)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        if exc.code == 429:
            limit = getattr(exc, "limit", None)
            detail = f"rate limit exceeded ({limit.limit})" if limit is not None else "rate limit exceeded"
            retry = _retry_after(app)
            headers["Retry-After"] = str(retry)
            return problem_response(429, "Too Many Requests", detail, headers)
        return problem_response(exc.code or 500, exc.name, exc.description or "", headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "Internal Server Error", "unexpected error; see the server log")


def _retry_after(app: Flask) -> int:
    """Seconds until the breached window resets (Flask-Limiter's view of the current request)."""
    import time

    limiter = app.extensions["mapsvc"]["limiter"]
    try:
        lim = getattr(limiter, "current_limit", None)
        if lim is not None:
            return max(1, int(lim.reset_at - time.time()) + 1)
    except Exception:  # the header is advisory; a missing window must not turn a 429 into a 500
        pass
    return 1
