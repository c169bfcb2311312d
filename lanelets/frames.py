"""Reference frames and epochs: what a coordinate means, and one pyproj chain between any two.

A map in China is in CGCS2000 (by definition ITRF97 at epoch 2000.0); modern CORS and RTK give ITRF2014 or
ITRF2020 at the epoch of observation. Between them lie ~27 years of Eurasian plate motion (about 0.8 m in
Beijing in 2026). The chain, every step a PROJ operation applied to whole arrays::

    F @ t  --Helmert F->ITRF2014 at t (time-dependent, PROJ's ITRF init files)-->   ITRF2014 @ t
           --plate motion model ITRF2014:<plate>, t -> 2000.0 (Altamimi et al. 2017)--> ITRF2014 @ 2000.0
           --Helmert ITRF2014->ITRF97 evaluated at 2000.0-->                            CGCS2000

The hub is "ITRF2014 moved by the plate model to 2000.0": every frame goes to it and back, so any pair
works (e.g. a station in ITRF2020@2020.0 to a service frame ITRF2014@2026.9). Propagating in ITRF2014 first
and then applying the Helmert at 2000.0 is the same as the Helmert at t followed by ITRF97 velocities, without
needing an ITRF97 velocity model.

PROJ's ``ITRF2014`` init file has a malformed ``<ITRF97>`` line (``+d=`` for ``+s=`` and ``+dx0.0001`` without
``=``), so PROJ would silently drop the scale and the x-rate. We do not use it: :data:`ITRF2014_TO_ITRF97`
holds the parameters as IGN publishes them (Transfo-ITRF2014_ITRFs.txt; the same line serves ITRF96/94).
:func:`proj_init_problems` checks the shipped init lines, and the tests pin our parameters to the published
values. Accuracy is in docs/frames.md.
"""
from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pyproj import Transformer
from pyproj.datadir import get_data_dir

from lanelets.errors import MapError

HUB_EPOCH = 2000.0
DEFAULT_PLATE = "EURA"
DEFAULT_FRAME = "CGCS2000"

# ITRF2014 -> ITRF97, IGN (itrf.ign.fr/doc_ITRF/Transfo-ITRF2014_ITRFs.txt), epoch 2010.0, PROJ units:
# T in m, scale in ppm, rotations in arc-seconds, rates per year; position-vector convention.
ITRF2014_TO_ITRF97 = {"x": 0.0074, "y": -0.0005, "z": -0.0628, "s": 0.0038, "rx": 0.0, "ry": 0.0, "rz": 0.00026,
                      "dx": 0.0001, "dy": -0.0005, "dz": -0.0033, "ds": 0.00012, "drx": 0.0, "dry": 0.0,
                      "drz": 0.00002, "t_epoch": 2010.0}


class FrameError(MapError):
    """A frame or epoch is unknown, missing or contradicts the frame's definition (one line)."""


@dataclass(frozen=True)
class Frame:
    """A horizontal reference frame. ``fixed_epoch`` is set for frames defined at one epoch (CGCS2000 =
    ITRF97 at 2000.0); dynamic frames (ITRF, WGS 84) need the epoch of the coordinates."""

    name: str
    to_itrf2014: str          # pipeline steps F -> ITRF2014 at the 4th coordinate's epoch (geocentric, m)
    fixed_epoch: float | None = None
    note: str = ""

    @property
    def dynamic(self) -> bool:
        return self.fixed_epoch is None


def _helmert(params: dict, *, inv: bool = False) -> str:
    args = " ".join(f"+{k}={v!r}" for k, v in params.items())
    return f"+step {'+inv ' if inv else ''}+proj=helmert {args} +convention=position_vector"


def _init(entry: str, *, inv: bool = False) -> str:
    return f"+step {'+inv ' if inv else ''}+proj=helmert +init={entry}"


def _set_epoch(epoch: float) -> str:
    # PROJ's helmert +t_obs does not override the time of a 4D coordinate; a `set` step does
    return f"+step +proj=set +v_4={epoch!r}"


FRAMES: dict[str, Frame] = {
    "ITRF2014": Frame("ITRF2014", ""),
    # ITRF2020 -> ITRF2014 from PROJ's ITRF2020 file is the inverse of its ITRF2014 entry (that line is sound)
    "ITRF2020": Frame("ITRF2020", _init("ITRF2020:ITRF2014")),
    # WGS 84 (G2139) is aligned to ITRF2014/IGb14 at the centimetre level; taken as ITRF2014 at the epoch given
    "WGS84": Frame("WGS84", "", note="taken as ITRF2014 (WGS 84 G2139 agrees at about 1 cm)"),
    "CGCS2000": Frame("CGCS2000", _helmert(ITRF2014_TO_ITRF97, inv=True), fixed_epoch=HUB_EPOCH),
}


def frame(name: str) -> Frame:
    f = FRAMES.get(str(name).upper().replace("-", "").replace(" ", ""))
    if f is None:
        raise FrameError(f"unknown frame {name!r}; known: {', '.join(FRAMES)}")
    return f


def decimal_year(t: float | None = None) -> float:
    """Epoch (decimal year) of a POSIX time, default now."""
    t = time.time() if t is None else t
    year = time.gmtime(t).tm_year
    start, end = calendar.timegm((year, 1, 1, 0, 0, 0)), calendar.timegm((year + 1, 1, 1, 0, 0, 0))
    return year + (t - start) / (end - start)


def parse(spec: str, epoch: float | None = None) -> tuple[Frame, float | None]:
    """``NAME`` or ``NAME@EPOCH`` (e.g. ``ITRF2014@2026.9``) -> (Frame, epoch). A fixed-epoch frame given at
    another epoch is refused (CGCS2000 is 2000.0 by definition)."""
    name, _, at = str(spec).partition("@")
    f = frame(name)
    if at:
        try:
            epoch = float(at)
        except ValueError:
            raise FrameError(f"frame {spec!r}: epoch {at!r} is not a decimal year") from None
    if epoch is not None and not (1980.0 <= float(epoch) <= 2100.0):
        raise FrameError(f"frame {spec!r}: epoch {epoch} is not a plausible decimal year")
    if f.fixed_epoch is not None:
        if epoch is not None and abs(float(epoch) - f.fixed_epoch) > 1e-9:
            raise FrameError(f"frame {f.name} is defined at epoch {f.fixed_epoch}; epoch {epoch} contradicts it")
        epoch = f.fixed_epoch
    return f, (None if epoch is None else float(epoch))


def declaration(spec: str | None = None, *, vertical: str = "ellipsoidal", offset: dict | None = None) -> dict:
    """The ``frame`` block of a release manifest (signed with it): horizontal frame and epoch, vertical
    reference, and the offset provider applied (name, version, certified)."""
    f, epoch = parse(spec or DEFAULT_FRAME)
    if f.dynamic and epoch is None:
        raise FrameError(f"frame {f.name} is dynamic: give its epoch, e.g. {f.name}@2026.9")
    out = {"horizontal": f.name, "epoch": epoch, "vertical": vertical}
    if offset is not None:
        out["offset"] = {"name": offset.get("name"), "version": offset.get("version"),
                         "certified": bool(offset.get("certified"))}
    return out


def _pipeline(src: Frame, dst: Frame, dst_epoch: float, plate: str) -> str:
    """src at the 4th coordinate's epoch -> dst at ``dst_epoch``, lon/lat degrees + ellipsoidal height.
    Source steps run at each point's own epoch; a ``set`` step then makes the time ``dst_epoch``."""
    steps = ["+proj=pipeline", "+step +proj=unitconvert +xy_in=deg +xy_out=rad", "+step +proj=cart +ellps=GRS80"]
    steps.append(src.to_itrf2014)
    # plate motion t -> 2000.0: the model rotates with the plate from t_epoch, so back in time is its inverse
    steps.append(f"+step +inv +proj=helmert +init=ITRF2014:{plate} +t_epoch={HUB_EPOCH!r}")
    # back from the hub: plate motion 2000.0 -> dst_epoch, then ITRF2014 -> dst evaluated at dst_epoch
    steps.append(_set_epoch(dst_epoch))
    steps.append(f"+step +proj=helmert +init=ITRF2014:{plate} +t_epoch={HUB_EPOCH!r}")
    if dst.to_itrf2014:
        steps.append(dst.to_itrf2014.replace("+step +inv ", "+step ", 1) if "+inv " in dst.to_itrf2014
                     else dst.to_itrf2014.replace("+step ", "+step +inv ", 1))
    steps += ["+step +inv +proj=cart +ellps=GRS80", "+step +proj=unitconvert +xy_in=rad +xy_out=deg"]
    return " ".join(s for s in steps if s)


@lru_cache(maxsize=32)
def _transformer(src: str, dst: str, dst_epoch: float, plate: str) -> Transformer:
    return Transformer.from_pipeline(_pipeline(frame(src), frame(dst), dst_epoch, plate))


class FrameTransform:
    """src frame (epoch per point) -> dst frame at one epoch; built once, applied to whole arrays.

    ``dst_epoch`` may be omitted for a fixed-epoch destination (CGCS2000)."""

    def __init__(self, src: str, dst: str, dst_epoch: float | None = None, plate: str = DEFAULT_PLATE):
        self.src, _ = parse(src)
        self.dst, dst_epoch = parse(dst, dst_epoch)
        if dst_epoch is None:
            raise FrameError(f"frame {self.dst.name} is dynamic: the destination needs an epoch")
        self.dst_epoch = dst_epoch
        self.plate = plate
        self._tr = _transformer(self.src.name, self.dst.name, dst_epoch, plate)

    def __call__(self, lon, lat, h=None, epoch=None):
        """(lon, lat, h) arrays in the destination. ``epoch``: the coordinates' epoch (scalar or per point);
        required for a dynamic source frame, implied for a fixed-epoch one."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        h = np.zeros_like(lon) if h is None else np.asarray(h, dtype=np.float64)
        if self.src.fixed_epoch is not None:
            if epoch is not None and np.any(np.abs(np.asarray(epoch, float) - self.src.fixed_epoch) > 1e-9):
                raise FrameError(f"frame {self.src.name} is defined at epoch {self.src.fixed_epoch}; "
                                 f"positions at another epoch contradict it")
            epoch = self.src.fixed_epoch
        elif epoch is None:
            raise FrameError(f"positions in {self.src.name} need an epoch (decimal year)")
        t = np.broadcast_to(np.asarray(epoch, dtype=np.float64), lon.shape)
        if self.src.name == self.dst.name and np.all(t == self.dst_epoch):
            return lon.copy(), lat.copy(), h.copy()
        x, y, z, _ = self._tr.transform(lon, lat, h, t)
        return x, y, z


    def by_cells(self, lon, lat, h=None, epoch=None, cell_deg: float = 0.01, cell_years: float = 1e-3):
        """The same for many positions, transforming one point per (0.01° cell, 0.001-year) and shifting the
        positions of a cell by its centre's shift. The shift varies by < 0.2 mm across a cell (plate rotation
        ~1e-7 rad over 1.1 km; the degree-per-metre change with latitude) and by 15 µm over half a cell's
        time; tests bound it against the exact transform. For 100,000 vehicle fixes this is one pyproj call
        on a few dozen points instead of 100,000."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        h = np.zeros_like(lon) if h is None else np.broadcast_to(np.asarray(h, dtype=np.float64), lon.shape)
        t = np.broadcast_to(np.asarray(self.src.fixed_epoch if self.src.fixed_epoch is not None else
                                       (np.nan if epoch is None else epoch), dtype=np.float64), lon.shape)
        if lon.size < 1000 or not np.all(np.isfinite(t)):
            return self(lon, lat, h, epoch)
        i = np.floor(lon / cell_deg).astype(np.int64)
        j = np.floor(lat / cell_deg).astype(np.int64)
        k = np.rint(t / cell_years).astype(np.int64)
        i0, j0, k0 = i.min(), j.min(), k.min()
        nj, nk = j.max() - j0 + 1, k.max() - k0 + 1
        keys, inverse = np.unique(((i - i0) * nj + (j - j0)) * nk + (k - k0), return_inverse=True)
        c_lon = (keys // (nj * nk) + i0 + 0.5) * cell_deg
        c_lat = (keys // nk % nj + j0 + 0.5) * cell_deg
        c_t = (keys % nk + k0) * cell_years
        o_lon, o_lat, o_h = self(c_lon, c_lat, np.zeros(len(c_lon)),
                                 c_t if self.src.fixed_epoch is None else None)
        return lon + (o_lon - c_lon)[inverse], lat + (o_lat - c_lat)[inverse], h + o_h[inverse]


def transform(lon, lat, h, src: str, dst: str, *, epoch=None, dst_epoch=None, plate: str = DEFAULT_PLATE):
    """One-shot form of :class:`FrameTransform` (``src``/``dst`` may carry ``@EPOCH``)."""
    s, s_epoch = parse(src, None)
    return FrameTransform(s.name, dst, dst_epoch, plate)(lon, lat, h, s_epoch if epoch is None else epoch)


# -- PROJ's own ITRF entries, checked before anything relies on them -----------------------------------------
_TOKEN = re.compile(r"^\+(?P<key>[a-z_]+)(=(?P<value>\S+))?$")
_HELMERT_KEYS = {"proj", "x", "y", "z", "s", "rx", "ry", "rz", "dx", "dy", "dz", "ds", "drx", "dry", "drz",
                 "t_epoch", "convention", "exact"}


def proj_init_problems(init_file: str = "ITRF2014") -> dict[str, list[str]]:
    """{entry: [problems]} for the Helmert lines of a PROJ ITRF init file: unknown or value-less tokens
    (PROJ ignores what it does not know, so a typo silently drops a parameter)."""
    path = Path(get_data_dir()) / init_file
    problems: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^<(\w+)>\s*(.*)$", line.strip())
        if not m:
            continue
        bad = []
        for tok in m.group(2).split():
            t = _TOKEN.match(tok)
            if t is None or t.group("key") not in _HELMERT_KEYS:
                bad.append(f"unknown token {tok!r}")
            elif t.group("key") != "proj" and t.group("key") not in ("exact",) and t.group("value") is None:
                bad.append(f"{tok!r} has no value")
        if bad:
            problems[m.group(1)] = bad
    return problems
