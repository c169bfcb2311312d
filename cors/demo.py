"""RTK without a device: our caster, a replayed GEONET station, a rover over NTRIP (``make demo``).

The data are the real GEONET 3034 base and Septentrio car rover that the ``cssrlib`` wheel ships
(``cssrlib/data/3034078M1.21O``, ``SEPT078M1.21O``, ``SEPT078M.21P``; 2021-03-19, 1 Hz, 60 s).
``rtk_session`` is the same loop for any base/rover pair; tests use it on the shared data.
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cors.errors import CorsError
from cors.replay import ReplayConfig, replay
from cors.rover import RoverConfig, run_rover
from cors.rtk import EpochStatus

# GSI's coordinate of GEONET 3034 (ECEF, m): the value cssrlib's own RTK sample uses. The RINEX
# header APPROX POSITION is 4.4 m off and must not be used as the base.
GEONET_3034_ECEF = (-3959400.631, 3385704.533, 3667523.111)
DEMO_FILES = {"base": "3034078M1.21O", "rover": "SEPT078M1.21O", "nav": "SEPT078M.21P"}


def cssrlib_data() -> dict[str, Path]:
    """Paths of the demo RINEX files inside the installed cssrlib wheel."""
    try:
        root = resources.files("cssrlib") / "data"
    except ModuleNotFoundError:
        raise CorsError("the RTK demo needs the cssrlib package (its wheel ships the GEONET data)") from None
    paths = {k: Path(str(root / name)) for k, name in DEMO_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise CorsError(f"cssrlib data file(s) missing: {', '.join(missing)}")
    return paths


@dataclass
class Pair:
    """A base/rover data set: base RINEX + its ARP, rover RINEX, nav, RTKLIB conf."""

    base_obs: Path
    rover_obs: Path
    nav: Sequence[Path]
    base_ecef: Sequence[float] | None = None  # None: the base RINEX header position
    conf: Path | None = None
    station_id: str = "3034"
    mountpoint: str = "GEONET3034"


ClientHook = Callable[[int, str, str, str], Awaitable[None] | None]


async def rtk_session(home: Path, pair: Pair, *, speed: float = 5.0, push_version: int = 2,
                      rover_version: int = 2, on_epoch: Callable[[EpochStatus], None] | None = None,
                      log: Callable[[str], None] | None = None, extra_clients: int = 0,
                      on_up: ClientHook | None = None, seconds: float | None = None,
                      max_wait: float = 2.0, rover_mountpoint: str | None = None) -> dict:
    """Caster (ours, in this event loop) + replayed station + rover; returns the rover summary.

    ``on_up(port, mountpoint, user, token)`` runs once the mountpoint is live, before the first
    epoch (tests attach capture clients there and pass their number as ``extra_clients``).
    """
    from cors.caster import Caster
    from cors.rtcm_encode import read_rinex
    from cors.stations import Station, StationRegistry
    from tokens import TokenStore

    log = log or (lambda _m: None)
    home.mkdir(parents=True, exist_ok=True)
    registry = StationRegistry(home / "stations.sqlite")
    tokens = TokenStore(home / "tokens.sqlite")
    caster = None
    tasks: list[asyncio.Task] = []
    try:
        ecef = tuple(pair.base_ecef) if pair.base_ecef else read_rinex(pair.base_obs).header_ecef
        password = secrets.token_urlsafe(12)
        with contextlib.suppress(CorsError):
            registry.remove(pair.station_id)
        registry.add(Station(id=pair.station_id, mountpoint=pair.mountpoint, ecef=ecef,
                             name=f"replay of {pair.base_obs.name}", source="push"), password=password)
        user = f"rover-{secrets.token_hex(3)}"
        token = tokens.create("vehicle", user)
        caster = Caster(registry, tokens, host="127.0.0.1", port=0)
        await caster.start()
        port = caster.port
        log(f"demo: NTRIP caster on 127.0.0.1:{port}, station {pair.station_id} -> /{pair.mountpoint}")
        go = asyncio.Event()
        from cors.replay import rtcm_station_id

        push = asyncio.create_task(replay(
            ReplayConfig(pair.base_obs, pair.nav, ecef, speed=speed,
                         station_id=rtcm_station_id(pair.station_id)),
            f"ntrip://{pair.station_id}:{password}@127.0.0.1:{port}/{pair.mountpoint}",
            ntrip_version=push_version, log=log, hold=30.0, ready=go))
        tasks.append(push)
        mount = None
        deadline = time.monotonic() + 30.0
        while mount is None or not mount.up:
            if push.done():
                push.result()
                raise CorsError("replay ended before the station came up")
            if time.monotonic() > deadline:
                raise CorsError("the replayed station did not come up within 30 s")
            await asyncio.sleep(0.02)
            mount = caster.mounts.get(pair.mountpoint)
        if on_up is not None:
            res = on_up(port, pair.mountpoint, user, token)
            if asyncio.iscoroutine(res):
                await res
        rover_mount = rover_mountpoint or pair.mountpoint
        rover_cfg = RoverConfig(pair.rover_obs, f"ntrip://{user}:{token}@127.0.0.1:{port}/{rover_mount}",
                                pair.nav, pair.conf, rover_version, max_wait=max_wait)
        stop = asyncio.Event()
        rover_task = asyncio.create_task(run_rover(rover_cfg, on_epoch=on_epoch, log=log, stop=stop))
        tasks.append(rover_task)
        while len(mount.clients) < 1 + extra_clients:
            if rover_task.done():
                rover_task.result()
            if time.monotonic() > deadline + 30.0:
                raise CorsError("clients did not attach to the replayed station in time")
            await asyncio.sleep(0.02)
        go.set()  # epochs start now: every client sees the whole file
        started = time.monotonic()
        if seconds is not None:
            done, _ = await asyncio.wait({rover_task}, timeout=seconds)
            if not done:
                stop.set()
        result = await rover_task
        push.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await push
        return result.summary | {"seconds": round(time.monotonic() - started, 3),
                                 "corrections": result.corrections,
                                 "statuses": result.statuses}
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if caster is not None:
            await caster.close()
        registry.close()
        tokens.close()


def run_rtk_demo(home: Path, seconds: float | None = None, *, speed: float = 5.0,
                 out=None) -> dict:
    """``make demo``: GEONET 3034 replayed through our caster to a rover; prints RTK status."""
    out = out or sys.stdout
    files = cssrlib_data()
    pair = Pair(files["base"], files["rover"], [files["nav"]], GEONET_3034_ECEF)

    def show(st: EpochStatus) -> None:
        print(f"  rover {st.line()}", file=out, flush=True)

    print(f"RTK demo: GEONET 3034 ({files['base'].name}, shipped in cssrlib) replayed x{speed:g} "
          f"through the NTRIP caster; rover {files['rover'].name}", file=out, flush=True)
    summary = asyncio.run(rtk_session(Path(home) / "rtk-demo", pair, speed=speed, on_epoch=show,
                                      log=lambda m: print(f"  {m}", file=out, flush=True),
                                      seconds=seconds))
    print(f"RTK demo: {summary['summary']}", file=out, flush=True)
    return summary  # "statuses": the solved epochs (the vehicle demo takes their scatter)
