"""The network mountpoint's processing in a child process, off the caster's event loop.

Why: a network epoch costs ~20 ms per baseline (two RTKLIB filters) plus a few ms per virtual station
(docs/network-rtk.md); on the caster's loop that time would be taken from every client's fan-out, and a network
of tens of stations would not fit in one second at all. The child (``python -m cors.network.worker``) owns the
ephemerides, the engine and the RTCM encoders (:class:`NetworkService`); the caster keeps what must answer at
once: its clients, the virtual stations' pool (:mod:`cors.network.cells`, sans-I/O) and the fan-out feeds.

Messages are pickled and length-prefixed on the child's stdin and stdout (the child is our own process):
- to the child: ``("start", config, sites)``, ``("stations", {key: (ecef, station_id)})``,
  ``("frames", station, [frame, ...])``;
- from the child: ``("out", {key: bytes})`` (an epoch's RTCM per virtual station), ``("status", engine status,
  epochs)``.
The caster writes to the pipe without blocking: beyond :data:`MAX_BACKLOG` queued bytes (a child far behind)
station frames are dropped and counted, and the caster's loop never waits. The child ends when its stdin
closes (the caster stopped or died).
"""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time

import numpy as np

from cors.monitor import message_number
from cors.network.cells import VirtualStationPool

log = logging.getLogger("cors.caster")

MAX_BACKLOG = 8 * 1024 * 1024  # bytes queued to the child before station frames are dropped
# RTCM ephemeris messages: GPS, GLONASS, BeiDou, QZSS, Galileo F/NAV and I/NAV
EPHEMERIS_TYPES = frozenset({1019, 1020, 1042, 1044, 1045, 1046})
STATUS_EVERY_S = 1.0


def _pack(msg) -> bytes:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


def _unpack(buf: bytearray) -> list:
    """Whole messages at the front of ``buf`` (removed from it)."""
    out = []
    while len(buf) >= 4:
        n = int.from_bytes(buf[:4], "big")
        if len(buf) < 4 + n:
            break
        out.append(pickle.loads(bytes(buf[4:4 + n])))
        del buf[:4 + n]
    return out


# -- the caster's side ----------------------------------------------------------------------------------
class RemoteNetwork:
    """The caster's handle on its network processor: the pool of virtual stations here, the work in the child.

    ``sites``: (station id, ARP ECEF, antenna type) of the network's stations; ``config``: the mountpoint's
    :class:`~cors.caster.kinds.network.NetworkConfig`; ``on_output({key: bytes})`` gets each epoch's RTCM per
    virtual station, on the loop."""

    def __init__(self, loop, sites, config, on_output):
        centre = np.mean([np.asarray(ecef, dtype=float) for _, ecef, _ in sites], axis=0)
        self.pool = VirtualStationPool(centre, cell_m=config.cell_m, move_m=config.move_m)
        self.loop, self.on_output = loop, on_output
        self.engine_status: dict = {}
        self.epochs = 0
        self.dropped_frames = 0
        self._out = bytearray()
        self._in = bytearray()
        self._writing = False
        self._stations_sent: dict | None = None
        # -u: the child's own log lines reach the caster's stderr as they are written
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "cors.network.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, close_fds=True)
        self._wfd, self._rfd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self._wfd, False)
        os.set_blocking(self._rfd, False)
        loop.add_reader(self._rfd, self._readable)
        self._send(("start", {"atx": config.atx, "integrity": config.integrity, "method": config.method,
                              "cell_m": config.cell_m, "move_m": config.move_m},
                    [(sid, tuple(float(v) for v in ecef), antenna) for sid, ecef, antenna in sites]))

    # -- clients (answered here, at once) ----------------------------------------------------------
    def place(self, client, lat: float, lon: float, height: float) -> tuple[int, int, int]:
        from cors.network.sites import llh_to_ecef

        key = self.pool.place(client, llh_to_ecef(lat, lon, height)).key
        self._sync_stations()
        return key

    def leave(self, client) -> None:
        self.pool.leave(client)
        self._sync_stations()

    def cells(self) -> set[tuple[int, int, int]]:
        return set(self.pool.stations)

    def _sync_stations(self) -> None:
        now = {k: (tuple(float(v) for v in st.position), st.station_id) for k, st in self.pool.stations.items()}
        if now != self._stations_sent:
            self._stations_sent = now
            self._send(("stations", now))

    # -- stations' frames ---------------------------------------------------------------------------
    def feed(self, station: str, frames: list[bytes]) -> None:
        if len(self._out) > MAX_BACKLOG:
            self.dropped_frames += len(frames)
            return
        self._send(("frames", station, frames))

    # -- status ----------------------------------------------------------------------------------------
    def status(self) -> dict:
        return {**self.engine_status, "virtual_stations": len(self.pool),
                "clients": len(self.pool.client_station), "epochs": self.epochs,
                "dropped_frames": self.dropped_frames}

    def metric_families(self) -> list:
        from cors.network.metrics import metric_families

        return metric_families(self.engine_status, virtual_stations=len(self.pool))

    # -- the pipe ------------------------------------------------------------------------------------
    def _send(self, msg) -> None:
        if self.proc is None:
            return
        self._out += _pack(msg)
        self._flush()

    def _flush(self) -> None:
        while self._out:
            try:
                n = os.write(self._wfd, self._out)
            except BlockingIOError:
                break
            except OSError as exc:  # the child is gone: say so once, keep the caster running
                log.error("network processor: %s", exc)
                self.close()
                return
            del self._out[:n]
        if self._out and not self._writing:
            self.loop.add_writer(self._wfd, self._flush)
            self._writing = True
        elif not self._out and self._writing:
            self.loop.remove_writer(self._wfd)
            self._writing = False

    def _readable(self) -> None:
        try:
            chunk = os.read(self._rfd, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            log.error("network processor exited (status %s)", self.proc.poll() if self.proc else None)
            self.close()
            return
        self._in += chunk
        for msg in _unpack(self._in):
            if msg[0] == "out":
                self.on_output(msg[1])
            elif msg[0] == "status":
                self.engine_status, self.epochs = msg[1], msg[2]

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self.loop.remove_reader(self._rfd)
        if self._writing:
            self.loop.remove_writer(self._wfd)
            self._writing = False
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the child's side -------------------------------------------------------------------------------------
class Processor:
    """What the child does with the messages: ephemerides, the engine, the virtual stations' RTCM."""

    def __init__(self, config: dict, sites):
        import pyrtklib as rtk

        from cors.network.sites import Site, antenna_model

        self.config = config
        self.sites = []
        for sid, ecef, antenna in sites:
            site = Site(sid, np.array(ecef, dtype=float), antenna=antenna)
            site.pcv = antenna_model(config["atx"], antenna, None)
            self.sites.append(site)
        self.nav = rtk.rtcm_t()  # its nav_t gathers the stations' ephemerides
        rtk.init_rtcm(self.nav)
        self.service = None
        self.stations: dict = {}

    def set_stations(self, stations: dict) -> None:
        self.stations = stations
        if self.service is not None:
            self.service.pool.mirror(stations)

    def feed(self, station: str, frames: list[bytes]) -> dict:
        import pyrtklib as rtk

        first_eph = None
        for f in frames:
            if message_number(f) in EPHEMERIS_TYPES:
                for byte in f:
                    if rtk.input_rtcm3(self.nav, byte) == 2 and first_eph is None:
                        first_eph = self._ephemeris_time()
        if self.service is None:
            if first_eph is None:
                return {}  # no ephemeris yet: the streams cannot be dated nor satellites placed
            self._start(first_eph)
        return self.service.feed_station(station, b"".join(frames))

    def _ephemeris_time(self):
        from cors.rtcm_encode import SYS_GLO, satsys

        sat = int(self.nav.ephsat)
        if sat <= 0:
            return None
        sys_, prn = satsys(sat)
        eph = self.nav.nav.geph[prn - 1] if sys_ == SYS_GLO else self.nav.nav.eph[sat - 1]
        return eph.toe

    def _start(self, time_hint) -> None:
        from cors.network.engine import NetworkEngine
        from cors.network.service import NetworkService

        engine = NetworkEngine(self.sites, self.nav.nav, integrity=self.config["integrity"])
        self.service = NetworkService(engine, time_hint, cell_m=self.config["cell_m"],
                                      move_m=self.config["move_m"], method=self.config["method"])
        self.service.pool.mirror(self.stations)

    def close(self) -> None:
        import pyrtklib as rtk

        if self.service is not None:
            self.service.close()
            self.service.engine.close()
        rtk.free_rtcm(self.nav)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="network processor: %(message)s")
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    buf = bytearray()
    proc: Processor | None = None
    pending_stations: dict = {}
    last_status, last_epochs = 0.0, -1
    while True:
        chunk = inp.read1(1 << 20)
        if not chunk:
            break
        buf += chunk
        for msg in _unpack(buf):
            kind = msg[0]
            if kind == "start":
                proc = Processor(msg[1], msg[2])
                proc.set_stations(pending_stations)
            elif kind == "stations":
                pending_stations = msg[1]
                if proc is not None:
                    proc.set_stations(msg[1])
            elif kind == "frames" and proc is not None:
                try:
                    result = proc.feed(msg[1], msg[2])
                except Exception:  # one bad epoch must not end the network
                    log.exception("station %s frames failed", msg[1])
                    continue
                if result:
                    out.write(_pack(("out", result)))
                svc = proc.service
                now = time.monotonic()
                if svc is not None and svc.epochs != last_epochs and now - last_status >= STATUS_EVERY_S:
                    out.write(_pack(("status", svc.engine.status(), svc.epochs)))
                    last_status, last_epochs = now, svc.epochs
                out.flush()
    if proc is not None:
        proc.close()


if __name__ == "__main__":
    main()
