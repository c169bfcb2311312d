"""Reference stations (CORS) and RTK corrections: registry, ingest monitoring, NTRIP caster.

Public face:
- ``StationRegistry`` / ``Station`` / ``parse_source``: the SQLite station registry and source kinds.
- ``Monitor`` / ``RtcmFramer``: per-station stream health from every RTCM 3 frame (pyrtcm).
- ``Caster`` / ``CasterInfo``: the asyncio NTRIP 1.0/2.0 caster with a NEAREST mountpoint;
  ``read_status(path)``: its station status as written for the HTTP API (``GET /v1/stations``).
- ``CorsError``: bad user input.
Modules: ``ntrip`` (both protocol sides, sans-I/O), ``geodesy`` (ECEF <-> geodetic), ``caster/``
(mountpoint kinds in ``caster/kinds/``), ``replay`` + ``rtcm_encode`` (RINEX -> RTCM), ``rover`` + ``rtk``.
"""
from cors.errors import CorsError
from cors.monitor import Monitor, RtcmFramer
from cors.stations import Station, StationRegistry, parse_source

__all__ = ["CorsError", "Monitor", "RtcmFramer", "Station", "StationRegistry", "parse_source",
           "Caster", "CasterInfo", "read_status"]


def __getattr__(name):  # the caster pulls in asyncio/numpy/pyproj: load it only when asked for
    if name in ("Caster", "CasterInfo", "read_status"):
        from cors import caster

        return getattr(caster, name)
    raise AttributeError(name)
