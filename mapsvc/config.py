"""Where mapsvc keeps its state: ``$MAPSVC_HOME`` (default ``./var``)."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The service home: SQLite catalogues, the tile blob store, keys, station registry."""
    path = Path(os.environ.get("MAPSVC_HOME") or "var").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
