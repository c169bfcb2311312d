"""Where mapsvc keeps its state: ``$MAPSVC_HOME`` (default ``./var``)."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The service home: SQLite catalogues, the tile blob store, keys, station registry."""
    path = Path(os.environ.get("MAPSVC_HOME") or "var").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_url() -> str:
    """The release store: ``$MAPSVC_STORE`` (e.g. ``postgresql://host/db``) or the SQLite store in the home.

    A PostgreSQL store keeps its blobs on a shared path: ``?blobs=`` in the URL, else ``$MAPSVC_HOME/store``.
    """
    url = os.environ.get("MAPSVC_STORE") or ""
    if not url:
        return str(home() / "store")
    if url.startswith(("postgresql://", "postgres://")) and "blobs=" not in url:
        from urllib.parse import quote

        url += ("&" if "?" in url else "?") + "blobs=" + quote(str(home() / "store"))
    return url


def state_db(filename: str, store: str | None = None, home_dir: str | Path | None = None) -> str:
    """Where tokens and the station registry live: with a PostgreSQL ``$MAPSVC_STORE``, that database (so
    nodes share them without a common home); else the SQLite file ``filename`` in the home.

    The one place that chooses; :func:`tokens.open_tokens` and :func:`cors.stations.open_registry` open it.
    ``store`` and ``home_dir`` default to ``$MAPSVC_STORE`` and :func:`home`."""
    url = str(os.environ.get("MAPSVC_STORE") or "" if store is None else store)
    if url.startswith(("postgresql://", "postgres://")):
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(url)  # our ?blobs= is not a libpq parameter
        return urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in parse_qsl(parts.query)
                                                          if k != "blobs"])))
    return str(Path(home_dir or home()) / filename)


def open_tokens():
    """The token store of this deployment (see :func:`state_db`)."""
    from tokens import open_tokens as open_at

    return open_at(state_db("tokens.sqlite"))


def open_stations():
    """The station registry of this deployment (see :func:`state_db`)."""
    from cors.stations import open_registry

    return open_registry(state_db("stations.sqlite"))
