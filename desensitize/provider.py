"""Offset providers: one interface, registered by name.

A provider moves WGS-84 lon/lat (degrees, numpy arrays) to the published coordinate system and back.
Providers are found by name in the ``mapsvc.offset_providers`` entry-point group, so a certified vendor
plug-in can ship as its own distribution; the built-ins are also listed in :data:`BUILTIN` so they work
before the project is (re)installed.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from importlib.metadata import entry_points

import numpy as np

from desensitize.errors import DesensitizeError

ENTRY_POINT_GROUP = "mapsvc.offset_providers"
BUILTIN = {
    "gcj02": "desensitize.gcj02:Gcj02Provider",
    "vendor": "desensitize.vendor:VendorProvider",
}


class OffsetProvider(ABC):
    """Moves points to the published (offset) coordinate system. Subclasses set ``name``, ``version`` and
    ``certified`` (True only for a state-certified technique)."""

    name: str = ""
    version: str = ""
    certified: bool = False

    @abstractmethod
    def forward(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True WGS-84 -> offset coordinates (new arrays)."""

    def inverse(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise DesensitizeError(f"offset provider {self.name!r} has no inverse")

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "certified": bool(self.certified)}


def available() -> dict[str, str]:
    """Provider name -> 'module:attr' (entry points override nothing: built-in names are reserved)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def get_provider(name: str, **options) -> OffsetProvider:
    """Instantiate the provider registered as ``name`` with its configuration ``options``."""
    target = available().get(name)
    if target is None:
        raise DesensitizeError(f"unknown offset provider {name!r}; known: {', '.join(sorted(available()))}")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise DesensitizeError(f"offset provider {name!r}: cannot load {target}: {exc}") from None
    try:
        provider = cls(**options)
    except TypeError as exc:
        raise DesensitizeError(f"offset provider {name!r}: bad options {sorted(options)}: {exc}") from None
    if not isinstance(provider, OffsetProvider):
        raise DesensitizeError(f"offset provider {name!r}: {target} is not an OffsetProvider")
    return provider
