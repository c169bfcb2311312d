"""Mountpoint kinds: the registry the caster dispatches and lists through (no string branches).

A kind is a ``Mountpoint`` subclass registered with ``@kind("name")`` in a module of
``cors/caster/kinds/`` (every module there is imported when the caster loads, so a new kind is one
new module). What a kind provides:

- ``per_station``: True for the kind the caster builds once per registry station (``station``);
  other kinds return their fixed mountpoints from ``offer(caster)`` (``NEAREST``; network/VRS).
- ``name``: the mountpoint as clients ask for it (non-station names are matched case-insensitively
  and must be in ``cors.stations.RESERVED_MOUNTPOINTS`` so no station can take them).
- ``available()``: whether a client may attach now (else v2 404, v1 the sourcetable).
- ``may_use(token)``: whether a token may use it (the role check is the caster's).
- ``needs_gga``: clients must report their position (NMEA GGA: ``Ntrip-GGA`` header or in-stream);
  ``position(conn, gga)`` then gets every GGA, the first one (header) also via ``attach``.
- ``attach(conn, gga)`` / ``detach(conn)``: a client joins/leaves. A kind feeds a client by
  ``caster.feed(conn, source)``, where ``source`` is a fan-out object (``StationMount`` or any
  object with ``name``, ``add_client``, ``remove_client``, ``send_to`` and ``last_arp``).
- ``str_record()``: its sourcetable STR row (``cors.ntrip.str_record``), or None to stay unlisted.
- ``client_count()``: for status and the ``ntrip_clients`` metric.
- ``status_sections()``: extra top-level blocks of the caster's status document (``{"network": ...}``).
- ``station_up(mount)`` / ``station_down(mount)`` / ``stations_changed()``: station events.
- ``close()``: the caster is stopping (end what the kind started: the network's processor).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from cors import ntrip
    from cors.caster.connection import Connection
    from cors.caster.core import Caster

KINDS: dict[str, type["Mountpoint"]] = {}


def kind(name: str):
    """Class decorator: register a mountpoint kind under ``name``."""
    def register(cls):
        if name in KINDS and KINDS[name] is not cls:
            raise ValueError(f"mountpoint kind {name!r} registered twice")
        cls.kind = name
        KINDS[name] = cls
        return cls
    return register


def load_kinds() -> dict[str, type["Mountpoint"]]:
    """Import every module of ``cors.caster.kinds`` (each registers its kind) and return the registry."""
    from cors.caster import kinds

    for info in pkgutil.iter_modules(kinds.__path__):
        importlib.import_module(f"{kinds.__name__}.{info.name}")
    return KINDS


class Mountpoint:
    """One mountpoint a client can ask for (see the module docstring for what a kind provides)."""

    kind: ClassVar[str] = ""
    per_station: ClassVar[bool] = False
    needs_gga: ClassVar[bool] = False

    def __init__(self, caster: "Caster", name: str):
        self.caster = caster
        self.name = name

    @classmethod
    def offer(cls, caster: "Caster") -> list["Mountpoint"]:
        """The fixed mountpoints of a non-station kind (called once when the caster starts)."""
        return []

    def available(self) -> bool:
        return True

    def may_use(self, token) -> bool:
        return token.may_access(self.name)

    def attach(self, conn: "Connection", gga: "ntrip.GGA | None") -> None:
        raise NotImplementedError

    def detach(self, conn: "Connection") -> None:
        pass

    def position(self, conn: "Connection", gga: "ntrip.GGA") -> None:
        pass

    def str_record(self) -> str | None:
        return None

    def client_count(self) -> int:
        return 0

    def status_sections(self) -> dict:
        return {}

    def station_up(self, mount) -> None:
        pass

    def station_down(self, mount) -> None:
        pass

    def stations_changed(self) -> None:
        pass

    def close(self) -> None:
        pass
