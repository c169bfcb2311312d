"""Per-source ingest budget: how many bytes a second, and how much event-loop time, one source gets.

A source's bytes are framed in slices of ``slice_bytes``; each slice is charged to two token
buckets (bytes, and seconds of framing time). A source over either budget waits until the
bucket refills, its backlog grows, and past ``max_backlog`` the caster stops reading from it
(TCP back-pressure). So a hostile source (``d3 03 ff`` repeated makes every third byte a frame
candidate) slows only itself: between slices the loop serves every other station.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class IngestLimits:
    """The caster's per-source limits (all configurable on ``Caster``)."""
    bytes_per_s: float = 256 * 1024   # a real RTCM station sends 1-10 kB/s
    cpu_share: float = 0.05           # of one core: framing seconds per wall second
    decode_share: float = 0.25        # of one core for the monitor's pyrtcm decode (~7 us a byte);
                                      # beyond it frames are still forwarded and counted, not decoded
    burst_s: float = 1.0              # buckets hold this many seconds of budget
    slice_bytes: int = 1024           # framed per loop turn (~1.5 ms of hostile candidates)
    max_backlog: int = 256 * 1024     # beyond this the source is not read until it drains


class TokenBucket:
    """Capacity ``rate * burst_s``; ``charge`` may drive it negative (work already done)."""

    __slots__ = ("rate", "capacity", "level", "stamp")

    def __init__(self, rate: float, burst_s: float, clock=time.monotonic):
        self.rate = float(rate)
        self.capacity = self.rate * burst_s
        self.level = self.capacity
        self.stamp = clock()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def charge(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level -= amount

    def wait_s(self, now: float) -> float:
        """Seconds until the bucket is no longer in debt."""
        self.refill(now)
        return 0.0 if self.level >= 0 else -self.level / self.rate


class SourceBudget:
    """The two buckets of one source, plus what was throttled (for status and tests)."""

    def __init__(self, limits: IngestLimits, clock=time.monotonic):
        self.limits = limits
        self.clock = clock
        self.bytes = TokenBucket(limits.bytes_per_s, limits.burst_s, clock)
        self.cpu = TokenBucket(limits.cpu_share, limits.burst_s, clock)
        self.decode = TokenBucket(limits.decode_share, limits.burst_s, clock)
        self.undecoded = 0  # frames counted but not decoded for lack of budget
        self.throttled = 0  # times the source had to wait

    def charge(self, nbytes: int, cpu_s: float) -> float:
        """Charge one slice; returns how long the source must now wait (0: go on)."""
        now = self.clock()
        self.bytes.charge(nbytes, now)
        self.cpu.charge(cpu_s, now)
        wait = max(self.bytes.wait_s(now), self.cpu.wait_s(now))
        if wait > 0:
            self.throttled += 1
        return wait

    def may_decode(self) -> bool:
        self.decode.refill(self.clock())
        return self.decode.level > 0

    def charge_decode(self, cpu_s: float) -> None:
        self.decode.charge(cpu_s, self.clock())
