"""Station coordinates in the service frame: a station's registered ARP, declared in its own frame and epoch,
transformed (lanelets.frames) into the one frame the caster serves, and RTCM 1005/1006 re-encoded with it.

A rover's RTK position is in the frame of the base coordinates it receives, so every 1005/1006 that leaves
the caster must carry the service frame, whatever the station itself sends: the caster replaces them.
Encoding is RTKLIB's (``gen_rtcm3`` through pyrtklib); the station id and antenna height come from the
station's own message (decoded with pyrtcm), so observations and ARP keep matching.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from cors.errors import CorsError
from cors.monitor import message_number

ARP_TYPES = (1005, 1006)


def to_service_frame(ecef, frame: str, epoch: float | None, service: str, service_epoch: float | None):
    """ECEF (m) of a station registered in ``frame``@``epoch`` -> ECEF in ``service``@``service_epoch``."""
    from cors.geodesy import ecef_to_geodetic, geodetic_to_ecef
    from lanelets.frames import FrameError, FrameTransform, parse

    try:
        src, src_epoch = parse(frame, epoch)
        dst, dst_epoch = parse(service, service_epoch)
        if src.dynamic and src_epoch is None:
            raise CorsError(f"station frame {src.name} needs the epoch of its coordinates")
        lat, lon, h = ecef_to_geodetic(*map(float, ecef))
        tlon, tlat, th = FrameTransform(src.name, dst.name, dst_epoch)(
            np.array([lon]), np.array([lat]), np.array([h]), src_epoch)
    except FrameError as exc:
        raise CorsError(str(exc)) from None
    x, y, z = geodetic_to_ecef(float(tlat[0]), float(tlon[0]), float(th[0]))
    return float(x), float(y), float(z)


def arp_fields(frame: bytes) -> dict:
    """Station id, message type and antenna height of a 1005/1006 frame (pyrtcm)."""
    from pyrtcm import RTCMReader

    msg = RTCMReader.parse(frame)
    return {"type": int(msg.identity), "station_id": int(msg.DF003),
            "antenna_height": float(getattr(msg, "DF028", 0.0) or 0.0)}


@lru_cache(maxsize=256)
def encode_arp(msg_type: int, station_id: int, ecef: tuple[float, float, float], antenna_height: float = 0.0) -> bytes:
    """One RTCM 1005 or 1006 frame (RTKLIB's encoder)."""
    import pyrtklib as rtk

    if msg_type not in ARP_TYPES:
        raise CorsError(f"RTCM {msg_type} is not a station ARP message")
    enc = rtk.rtcm_t()
    rtk.init_rtcm(enc)
    enc.staid = int(station_id)
    for i in range(3):
        enc.sta.pos[i] = float(ecef[i])
    enc.sta.hgt = float(antenna_height)
    enc.sta.deltype = 0
    if not rtk.gen_rtcm3(enc, msg_type, 0, 0):
        raise CorsError(f"RTKLIB could not encode RTCM {msg_type}")
    out = bytes(enc.buff[i] for i in range(enc.nbyte))
    rtk.free_rtcm(enc)
    return out


def reencode_arp(frame: bytes, ecef: tuple[float, float, float]) -> bytes:
    """The station's own 1005/1006 with its coordinates replaced by ``ecef`` (the service frame)."""
    f = arp_fields(frame)
    return encode_arp(f["type"], f["station_id"], tuple(round(v, 4) for v in ecef), round(f["antenna_height"], 4))


def default_service_frame() -> str:
    """ITRF2014 at the current epoch, to 0.1 year (what modern CORS publish)."""
    from lanelets.frames import decimal_year

    return f"ITRF2014@{round(decimal_year(), 1):.1f}"


class ServiceFrame:
    """The one frame a caster serves station coordinates in (declared in its sourcetable and status)."""

    def __init__(self, spec: str | None = None):
        from lanelets.frames import FrameError, parse

        try:
            f, epoch = parse(spec or default_service_frame())
        except FrameError as exc:
            raise CorsError(f"service frame: {exc}") from None
        if f.dynamic and epoch is None:
            raise CorsError(f"service frame {f.name} needs an epoch, e.g. {f.name}@2026.9")
        self.frame, self.epoch = f.name, epoch
        self.spec = f.name if not f.dynamic else f"{f.name}@{epoch:g}"

    def arp_of(self, station) -> tuple[tuple[float, float, float], bool]:
        """(ARP in the service frame, whether it differs from the registered one). A station without a
        declared frame is taken as registered in the service frame."""
        ecef = tuple(float(v) for v in station.ecef)
        if not getattr(station, "frame", None):
            return ecef, False
        from lanelets.frames import frame as frame_of

        if station.frame == self.frame and (not frame_of(self.frame).dynamic or station.epoch == self.epoch):
            return ecef, False
        return to_service_frame(ecef, station.frame, station.epoch, self.frame, self.epoch), True


def is_arp(frame: bytes) -> bool:
    return message_number(frame) in ARP_TYPES
