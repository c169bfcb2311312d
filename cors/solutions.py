"""Vehicle positions from files: RTKLIB solution files (.pos) and NMEA GGA.

RTKLIB ``.pos`` (as ``rnx2rtkp``, ``rtkrcv`` and ``mapsvc rover`` write them): '%' header lines, then one
epoch per line — time (``YYYY/MM/DD HH:MM:SS.sss`` or ``WEEK TOW``), then latitude/longitude (deg)/height or
x/y/z-ecef, then Q and ns. Read with numpy's C text reader over the whole file: pyrtklib's ``readsol``
returns one ``sol_t`` per epoch, and 100,000 Python attribute reads cost more than locating them (the tests
check the reader on rnx2rtkp's own llh, xyz and NMEA output). GGA sentences are parsed with pynmeagps.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cors.errors import CorsError

GPS_EPOCH = np.datetime64("1980-01-06T00:00:00", "ms")


class SolutionFileError(CorsError):
    """A position file cannot be read (one line naming the file)."""


@dataclass
class Positions:
    lat: np.ndarray
    lon: np.ndarray
    height: np.ndarray
    time: np.ndarray | None = None      # datetime64[ms] in the file's time system, or None (e.g. GGA)
    time_system: str = ""               # "GPST", "UTC", ... as the file says
    quality: np.ndarray | None = None   # RTKLIB Q (1 fix, 2 float, ...) / GGA fix quality

    def __len__(self) -> int:
        return len(self.lat)

    def epochs(self) -> np.ndarray | None:
        """Decimal years of the positions (None without times)."""
        if self.time is None:
            return None
        return decimal_years(self.time)

    def time_strings(self) -> list[str | None]:
        if self.time is None:
            return [None] * len(self)
        suffix = "Z" if self.time_system == "UTC" else (f" {self.time_system}" if self.time_system else "")
        return [s + suffix for s in np.datetime_as_string(self.time, unit="ms").tolist()]


def decimal_years(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype="datetime64[ms]")
    year = t.astype("datetime64[Y]")
    start = year.astype("datetime64[ms]")
    end = (year + 1).astype("datetime64[ms]")
    return year.astype(np.int64) + 1970 + (t - start).astype(np.float64) / (end - start).astype(np.float64)


def read_pos(path: str | os.PathLike) -> Positions:
    """An RTKLIB solution file in llh (degrees) or xyz-ecef; ECEF is converted to lon/lat/h with pyproj."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SolutionFileError(f"{path}: {exc.strerror or exc}") from None
    # '%' header lines come first; the body is parsed column-wise over the whole file
    offset = 0
    header = []
    while data.startswith(b"%", offset) or data.startswith(b"\n", offset):
        nl = data.find(b"\n", offset)
        nl = len(data) if nl < 0 else nl
        if data.startswith(b"%", offset):
            header.append(data[offset:nl])
        offset = nl + 1
    colnames = header[-1].decode("ascii", "replace").lower() if header else ""
    if "latitude(d'" in colnames or "latitude(dms" in colnames:
        raise SolutionFileError(f"{path}: latitude/longitude in deg-min-sec; write the solution in degrees "
                                "(RTKLIB out-solformat=llh, out-degform=deg)")
    ecef = "x-ecef" in colnames
    body = data[offset:]
    first_line = body[: body.find(b"\n")] if b"\n" in body else body
    head = first_line.split()
    if not head:
        raise SolutionFileError(f"{path}: no solution lines")
    calendar = b"/" in head[0]
    ncol = min(len(head), 6)
    names = [("t0", "S10") if calendar else ("t0", "i8"), ("t1", "S24") if calendar else ("t1", "f8"),
             ("a", "f8"), ("b", "f8"), ("c", "f8"), ("q", "i8")][:ncol]
    try:
        # numpy's C text reader: one pass over the file, every column typed
        cols = np.loadtxt(io.BytesIO(body), dtype=names, usecols=range(ncol), comments="%", ndmin=1)
        if calendar:
            time = _calendar(cols["t0"], cols["t1"])
        else:  # GPS week and seconds of week
            time = GPS_EPOCH + (cols["t0"] * 604800_000 + np.round(cols["t1"] * 1000).astype(np.int64)
                                ).astype("timedelta64[ms]")
        a, b, c = cols["a"], cols["b"], cols["c"]
        quality = cols["q"] if ncol > 5 else None
    except (ValueError, TypeError, IndexError) as exc:
        raise SolutionFileError(f"{path}: not an RTKLIB solution file ({str(exc).splitlines()[0]})") from None
    if ecef:
        from cors.geodesy import ecef_to_geodetic

        lat, lon, h = ecef_to_geodetic(a, b, c)
    else:
        lat, lon, h = a, b, c
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise SolutionFileError(f"{path}: latitude/longitude outside WGS-84 ranges")
    system = "UTC" if "utc" in colnames else ("GPST" if "gpst" in colnames or not calendar else "")
    return Positions(np.asarray(lat), np.asarray(lon), np.asarray(h), time, system, quality)


def _calendar(dates: np.ndarray, times: np.ndarray) -> np.ndarray:
    """datetime64[ms] from 'YYYY/MM/DD' and 'HH:MM:SS.sss' byte-string arrays (few distinct dates per file:
    each is converted once)."""
    days, inverse = np.unique(dates, return_inverse=True)
    day = np.array([d.replace(b"/", b"-").decode() for d in days.tolist()], dtype="datetime64[D]")[inverse]
    times = np.ascontiguousarray(times)
    w = times.dtype.itemsize
    v = times.view(np.uint8).reshape(len(times), w)
    if w < 8 or not (np.all(v[:, 2] == ord(":")) and np.all(v[:, 5] == ord(":"))):
        raise ValueError("time of day is not HH:MM:SS")
    hh = (v[:, 0] - 48).astype(np.int64) * 10 + (v[:, 1] - 48)
    mm = (v[:, 3] - 48).astype(np.int64) * 10 + (v[:, 4] - 48)
    ss = np.ascontiguousarray(v[:, 6:]).view(f"S{w - 6}").ravel().astype(np.float64)
    ms = (hh * 3600 + mm * 60) * 1000 + np.round(ss * 1000).astype(np.int64)
    return day.astype("datetime64[ms]") + ms.astype("timedelta64[ms]")


def read_gga(path: str | os.PathLike) -> Positions:
    """Every GGA sentence of an NMEA 0183 log with a fix (any talker: $GPGGA, $GNGGA, ...). Height is
    ellipsoidal: altitude above the geoid plus the geoid separation. GGA carries only the time of day: the
    date comes from the log's RMC sentences (UTC); without any, time is None (the epoch then comes from
    --epoch)."""
    from pynmeagps import NMEAReader
    from pynmeagps.exceptions import NMEAParseError

    path = Path(path)
    lat, lon, h, q, tod, day = [], [], [], [], [], []
    date = None
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise SolutionFileError(f"{path}: {exc.strerror or exc}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line.startswith("$") or line[3:6] not in ("GGA", "RMC"):
            continue
        try:
            msg = NMEAReader.parse(line)
        except NMEAParseError as exc:
            raise SolutionFileError(f"{path}:{n}: bad NMEA sentence ({exc})") from None
        if msg.msgID == "RMC":
            date = getattr(msg, "date", None) or date
            continue
        if not msg.quality or msg.lat == "" or msg.lon == "":
            continue  # no fix
        tod.append(msg.time)
        day.append(date)
        lat.append(float(msg.lat))
        lon.append(float(msg.lon))
        h.append(float(msg.alt or 0.0) + float(msg.sep or 0.0))
        q.append(int(msg.quality))
    if not lat:
        raise SolutionFileError(f"{path}: no GGA sentence with a fix")
    time = None
    if all(d is not None and d != "" for d in day):
        import datetime as dt

        time = np.array([dt.datetime.combine(d, t.replace(tzinfo=None)) for d, t in zip(day, tod)],
                        dtype="datetime64[ms]")
        # an RMC date is that of its own second: a GGA after midnight UTC before the next RMC rolls over
        back = np.r_[False, np.diff(time) < np.timedelta64(-12, "h")]
        time = time + np.cumsum(back) * np.timedelta64(1, "D")
    return Positions(np.array(lat), np.array(lon), np.array(h), time, "UTC" if time is not None else "",
                     np.array(q))
