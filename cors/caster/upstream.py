"""Pulled sources: a station whose stream the caster fetches (raw TCP, an upstream NTRIP caster, or
a RINEX file replayed as a live station), reconnecting with ``cors.ntrip.Backoff``."""
from __future__ import annotations

import asyncio
import logging
import time

from cors import ntrip
from cors.errors import CorsError

log = logging.getLogger("cors.caster")

PULLED_KINDS = ("tcp", "ntrip", "rinex")


async def pull(caster, mount) -> None:
    """Feed ``mount`` from its station's source until cancelled (a bad source spec ends it)."""
    mount.pulling = True
    try:
        await _pull_loop(caster, mount)
    finally:
        mount.pulling = False


async def _pull_loop(caster, mount) -> None:
    src = mount.station.source_spec
    backoff = ntrip.Backoff(caster.reconnect_min_s, caster.reconnect_max_s)
    while True:
        started = time.monotonic()
        try:
            if src.kind == "rinex":
                await _pull_rinex(caster, mount, src)
            else:
                await _pull_stream(caster, mount, src)
        except asyncio.CancelledError:
            raise
        except CorsError as exc:
            log.error("station %s: %s", mount.sid, exc)
            return
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ntrip.ProtocolError) as exc:
            log.warning("station %s: upstream %s failed: %s", mount.sid, src.public(), exc or type(exc).__name__)
        except Exception:
            log.exception("station %s: upstream %s failed", mount.sid, src.public())
        await asyncio.sleep(backoff.next_delay(time.monotonic() - started))


async def _pull_stream(caster, mount, src) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(src.host, src.port),
                                            ntrip.HANDSHAKE_TIMEOUT)
    try:
        dechunk = None
        if src.kind == "ntrip":
            writer.write(ntrip.client_request(src.url, 2, agent=ntrip.SERVER))
            await writer.drain()
            reply, rest = await ntrip.read_reply(reader)
            if not reply.ok:
                raise ConnectionRefusedError(f"upstream answered {reply.line[:60]!r}")
            if reply.chunked:
                dechunk = ntrip.ChunkDecoder()
                rest = dechunk.feed(rest)
            if rest:
                mount.ingest(rest)
        while True:
            data = await asyncio.wait_for(reader.read(65536), caster.monitor.down_after)
            if not data:
                raise ConnectionResetError("upstream closed the connection")
            if dechunk is not None:
                data = dechunk.feed(data)
            if data:
                mount.ingest(data)
                await mount.room()  # over its backlog: stop reading (the upstream's TCP waits)
    finally:
        writer.close()


async def _pull_rinex(caster, mount, src) -> None:
    try:
        from cors import replay
    except ImportError as exc:
        raise CorsError(f"rinex: sources are not available ({exc})") from None
    pending: list[bytes] = []
    loop = asyncio.get_running_loop()

    def flush():
        data = b"".join(pending)
        pending.clear()
        mount.ingest(data)

    # the frames of one epoch come back to back: gather them and fan out once per epoch
    async for frame in replay.iter_rtcm_frames(src.obs, src.nav, mount.arp_ecef, speed=caster.rinex_speed,
                                               loop=True, station_id=replay.rtcm_station_id(mount.sid)):
        if not pending:
            loop.call_soon(flush)
        pending.append(frame)
