"""The exception types that mean "bad input from the user" (exit status 2, one line, nothing written).

Each domain package defines its own typed errors; this tuple is the only place that lists them.
"""
from __future__ import annotations

import importlib


def _collect() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [FileNotFoundError, IsADirectoryError, PermissionError]
    for mod, names in (
        ("lanelets.errors", ("MapError",)),
        ("tiles.errors", ("TileError",)),
        ("cors.errors", ("CorsError",)),
        ("desensitize.errors", ("DesensitizeError",)),
        ("standards.errors", ("StandardsError",)),
        ("tiles.signing", ("SignatureError",)),
        ("mapsvc.client", ("FetchError",)),
        ("tokens", ("TokenError",)),
    ):
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError:
            continue
        found.extend(getattr(module, n) for n in names if hasattr(module, n))
    return tuple(found)


USER_ERRORS = _collect()
