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
