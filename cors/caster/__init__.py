"""asyncio NTRIP caster: NTRIP 1.0 and 2.0 clients and sources, sourcetable, NEAREST, pulled sources.

Design for fan-out to thousands of rovers: connections are ``asyncio.Protocol`` objects (no task per
client); a source's bytes are cut into RTCM frames, CRC-checked, and the complete frames of one read
are written to every client of the mountpoint with one non-blocking write each (straight to the
socket from a few threads when the client's transport buffer is empty and the mountpoint has many
clients, else ``transport.write``). A client whose transport backlog exceeds ``max_backlog`` bytes
is dropped on the spot, so a slow client never delays the others. Full pyrtcm decoding for the
monitor runs right after the fan-out.

Modules: ``core`` (Caster: life cycle, registry, dispatch), ``connection`` (per-connection state
machine), ``mountpoints`` (the kind registry and interface) with ``kinds/`` (station, nearest),
``fanout``, ``auth``, ``upstream`` (pulled sources), ``status`` (sourcetable, status, Prometheus).
"""
from cors.caster.core import Caster, CasterInfo, new_event_loop_policy
from cors.caster.fanout import PARALLEL_FANOUT_MIN
from cors.caster.kinds.nearest import NEAREST
from cors.caster.mountpoints import KINDS, Mountpoint, kind
from cors.caster.status import read_status

__all__ = ["Caster", "CasterInfo", "KINDS", "Mountpoint", "NEAREST", "PARALLEL_FANOUT_MIN", "kind",
           "new_event_loop_policy", "read_status"]
