"""Typed errors of the cors package: bad user input (registry, sources, station config)."""
from __future__ import annotations


class CorsError(ValueError):
    """A station, source or caster request that cannot be honoured (one line, names the problem)."""
