"""The station bus: every RTCM frame a node accepts from a station, on a Redis Stream per mountpoint.

``MAPSVC_BUS=redis://host:port/db`` turns it on; without it a caster fans out in-process, as on one machine.

- Ingest: the node that holds a station's upload (or pull) appends each read's CRC-checked frames to stream
  ``mapsvc:rtcm:<mountpoint>`` as one entry ``{d: frames, t: receive time (unix s), n: node id}``. Appends are
  batched per event-loop turn into one pipeline, off the fan-out path. Entries older than ``retention_s`` are
  trimmed (``MINID``: stream ids are millisecond times).
- Caster nodes follow every stream from ``$`` (live only: a rover wants the newest corrections) with one
  blocking ``XREAD`` and fan out to their own clients; a node skips its own entries (it fanned them out as
  they arrived).
- Durable consumers (the archive, a network processor) use a consumer group: :class:`StreamConsumer` re-reads
  its pending entries after a restart, then the new ones, and acknowledges each after handling it, so nothing
  within the retention is lost or handled twice by a consumer that finished its work.
- Node status: each node writes its status document to hash ``mapsvc:nodes`` every few seconds; the HTTP
  API of any node shows the whole network from it (:func:`network_status`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

log = logging.getLogger("cors.bus")

STREAM_PREFIX = "mapsvc:rtcm:"
NODES_KEY = "mapsvc:nodes"
DEFAULT_RETENTION_S = 3600.0
NODE_STALE_S = 10.0


def stream_of(mountpoint: str) -> str:
    return STREAM_PREFIX + mountpoint


@dataclass
class Entry:
    mountpoint: str
    id: str
    data: bytes      # complete CRC-checked RTCM frames
    received: float  # unix time the ingest node read them from the station
    node: str


def _entry(stream: bytes | str, eid: bytes | str, fields: dict) -> Entry:
    s = stream.decode() if isinstance(stream, bytes) else stream
    return Entry(s[len(STREAM_PREFIX):], eid.decode() if isinstance(eid, bytes) else eid, fields[b"d"],
                 float(fields[b"t"]), fields.get(b"n", b"").decode())


class RedisBus:
    """One node's connection to the bus (asyncio side for the caster, plain calls for everyone else)."""

    def __init__(self, url: str, node_id: str = "1", retention_s: float = DEFAULT_RETENTION_S):
        import redis
        import redis.asyncio

        self.url = url
        self.node_id = str(node_id)
        self.retention_s = retention_s
        self.sync = redis.Redis.from_url(url)
        self.aio = redis.asyncio.Redis.from_url(url)
        self._pending: list[tuple[str, bytes, float]] = []
        self._flushing = False
        self.published = 0
        self.publish_errors = 0

    # -- ingest ---------------------------------------------------------------------------------------
    def publish(self, mountpoint: str, data: bytes, received: float) -> None:
        """Queue frames for the stream (from the event loop; sent together at the end of this turn)."""
        self._pending.append((mountpoint, data, received))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                minid = int((time.time() - self.retention_s) * 1000)
                pipe = self.aio.pipeline(transaction=False)
                for mountpoint, data, received in batch:
                    pipe.xadd(stream_of(mountpoint), {"d": data, "t": repr(received), "n": self.node_id},
                              minid=minid, approximate=True)
                try:
                    await pipe.execute()
                    self.published += len(batch)
                except Exception as exc:  # the local fan-out goes on; other nodes miss these frames
                    self.publish_errors += len(batch)
                    log.warning("bus: could not publish %d entries: %s", len(batch), exc)
        finally:
            self._flushing = False

    def publish_now(self, mountpoint: str, data: bytes, received: float | None = None) -> str:
        """Append one entry synchronously (tools, tests, replays outside an event loop)."""
        minid = int((time.time() - self.retention_s) * 1000)
        eid = self.sync.xadd(stream_of(mountpoint), {"d": data, "t": repr(received or time.time()),
                                                     "n": self.node_id}, minid=minid, approximate=True)
        return eid.decode()

    # -- caster fan-out --------------------------------------------------------------------------------
    async def follow(self, mountpoints, handle, block_ms: int = 1000) -> None:
        """Call ``handle(entry)`` for every new entry of other nodes on the streams of ``mountpoints()``
        (re-evaluated each round, so stations added to the registry are followed), until cancelled."""
        last: dict[str, str] = {}
        while True:
            names = [stream_of(m) for m in mountpoints()]
            if not names:
                await asyncio.sleep(block_ms / 1000)
                continue
            try:
                for n in names:
                    if n not in last:
                        # "$" only means "newer than now" within one call: pin where each stream stands
                        top = await self.aio.xrevrange(n, count=1)
                        last[n] = top[0][0].decode() if top else "0-0"
                reply = await self.aio.xread({n: last[n] for n in names}, block=block_ms, count=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("bus: read failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for stream, entries in reply or ():
                key = stream.decode()
                for eid, fields in entries:
                    last[key] = eid.decode()
                    if fields.get(b"n", b"").decode() == self.node_id:
                        continue
                    handle(_entry(stream, eid, fields))

    # -- one puller per upstream ------------------------------------------------------------------------
    _RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
              "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end")
    _RELEASE = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                "return redis.call('del', KEYS[1]) else return 0 end")

    async def while_leader(self, name: str, work, lease_s: float = 6.0) -> None:
        """Run ``work()`` (a coroutine factory) only while this node holds lease ``name``, so of all nodes
        exactly one pulls an upstream station (and publishes it to the others); when the holder dies its
        lease runs out within ``lease_s`` and another node takes over. Until cancelled."""
        key, ms = f"mapsvc:lease:{name}", int(lease_s * 1000)
        while True:
            try:
                got = await self.aio.set(key, self.node_id, nx=True, px=ms)
            except Exception as exc:
                log.warning("bus: lease %s: %s", name, exc)
                got = False
            if not got:
                await asyncio.sleep(lease_s / 3)
                continue
            log.info("node %s now pulls %s", self.node_id, name)
            task = asyncio.ensure_future(work())
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=lease_s / 3)
                    try:
                        held = await self.aio.eval(self._RENEW, 1, key, self.node_id, ms)
                    except Exception:
                        held = 0  # cannot prove we hold it: stop pulling rather than pull twice
                    if not held:
                        log.warning("node %s lost the lease on %s", self.node_id, name)
                        break
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                try:  # a stopping node hands over at once; a dead one by the lease running out
                    await asyncio.wait_for(self.aio.eval(self._RELEASE, 1, key, self.node_id), 2.0)
                except (Exception, asyncio.TimeoutError):
                    pass

    # -- node status ------------------------------------------------------------------------------------
    def put_status(self, doc: dict) -> None:
        self.sync.hset(NODES_KEY, self.node_id, json.dumps(doc))

    def nodes(self) -> dict[str, dict]:
        return {k.decode(): json.loads(v) for k, v in self.sync.hgetall(NODES_KEY).items()}

    async def aclose(self) -> None:
        """Close the asyncio connections (ends a blocking read in progress)."""
        await self.aio.aclose()

    def close(self) -> None:
        self.sync.close()


class StreamConsumer:
    """A durable reader of station streams (consumer group ``group``, consumer ``name``).

    ``read()`` returns entries not yet acknowledged by this consumer, oldest first: after a restart, first the
    ones it had been given but not acknowledged, then new ones. ``ack(entries)`` marks them done.
    A new group starts at ``start`` ("0": everything retained; "$": from now on).
    """

    def __init__(self, url: str, group: str, name: str = "1", start: str = "0"):
        import redis

        self.r = redis.Redis.from_url(url)
        self.group, self.name, self.start = group, name, start
        self._groups: set[str] = set()
        self._backlog_done: set[str] = set()

    def _ensure(self, stream: str) -> None:
        import redis

        if stream in self._groups:
            return
        try:
            self.r.xgroup_create(stream, self.group, id=self.start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(stream)

    def read(self, mountpoints, count: int = 1000, block_ms: int | None = None) -> list[Entry]:
        streams = [stream_of(m) for m in mountpoints]
        for s in streams:
            self._ensure(s)
        out: list[Entry] = []
        backlog = [s for s in streams if s not in self._backlog_done]
        if backlog:  # our own unacknowledged entries first (handed to us before a crash)
            reply = self.r.xreadgroup(self.group, self.name, {s: "0" for s in backlog}, count=count)
            for stream, entries in reply or ():
                if not entries:
                    self._backlog_done.add(stream.decode())
                out += [_entry(stream, eid, f) for eid, f in entries if f]
            if out:
                return out
            self._backlog_done.update(backlog)
        reply = self.r.xreadgroup(self.group, self.name, {s: ">" for s in streams}, count=count, block=block_ms)
        for stream, entries in reply or ():
            out += [_entry(stream, eid, f) for eid, f in entries if f]
        return out

    def ack(self, entries: list[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for e in entries:
            by_stream.setdefault(stream_of(e.mountpoint), []).append(e.id)
        pipe = self.r.pipeline(transaction=False)
        for s, ids in by_stream.items():
            pipe.xack(s, self.group, *ids)
        pipe.execute()


BUSES = {"redis": RedisBus, "rediss": RedisBus, "unix": RedisBus}


def open_bus(url: str | None, node_id: str = "1"):
    """The bus named by a URL (``MAPSVC_BUS``), or None: the in-process fan-out of a single node."""
    if not url:
        return None
    scheme = url.partition("://")[0]
    factory = BUSES.get(scheme)
    if factory is None:
        from cors.errors import CorsError

        raise CorsError(f"MAPSVC_BUS: no bus for scheme {scheme!r} (have: {', '.join(sorted(BUSES))})")
    return factory(url, node_id)


def network_status(nodes: dict[str, dict], now: float | None = None) -> dict:
    """The whole network from every node's status: each station once (up if any live node has its data),
    with its clients per node; nodes silent for ``NODE_STALE_S`` count as gone."""
    now = time.time() if now is None else now
    live = {n: d for n, d in nodes.items() if now - float(d.get("generated") or 0) <= NODE_STALE_S}
    stations: dict[str, dict] = {}
    for node, doc in sorted(live.items()):
        for st in doc.get("stations", []):
            cur = stations.get(st["id"])
            if cur is None:
                cur = stations[st["id"]] = {**st, "clients": 0, "clients_by_node": {}, "source_node": None}
            cur["clients"] += int(st.get("clients") or 0)
            cur["clients_by_node"][node] = int(st.get("clients") or 0)
            cur["up"] = bool(cur.get("up")) or bool(st.get("up"))
            if st.get("source_connected"):
                cur["source_node"] = node
    doc = {"generated": max((float(d["generated"]) for d in live.values()), default=None),
            "nodes": {n: {"clients": d.get("caster", {}).get("clients", 0), "generated": d.get("generated")}
                      for n, d in sorted(live.items())},
            "stations": [stations[k] for k in sorted(stations)]}
    network = next((d["network"] for _, d in sorted(live.items()) if d.get("network")), None)
    if network:  # the network RTK mountpoint's state, from a node that runs one
        doc["network"] = network
    return doc
