"""Abuse limits of the caster: streams per token and back-off after failed authentication.

Both are configurable on ``Caster`` (``max_streams_per_token``, ``auth_free_failures``,
``auth_backoff_s``, ``auth_backoff_max_s``).
"""
from __future__ import annotations

import time


class AuthThrottle:
    """Failed-auth back-off per peer address (client credentials and station passwords alike).

    After ``free`` failures in a row each one blocks the address for a doubling
    time (``base_s`` .. ``max_s``) during which its attempts are refused unchecked. A success
    clears the address. Guessing a station password drops from ~35/s to a handful per hour.
    """

    def __init__(self, free: int = 5, base_s: float = 1.0, max_s: float = 300.0, clock=time.monotonic,
                 max_entries: int = 100_000):
        self.free, self.base_s, self.max_s, self.clock = free, base_s, max_s, clock
        self.max_entries = max_entries
        self._state: dict[str, tuple[int, float]] = {}  # address -> (failures, blocked until)
        self.refused = 0

    def blocked(self, addr: str) -> float:
        """Seconds this address must still wait (0: it may try)."""
        st = self._state.get(addr)
        if st is None:
            return 0.0
        left = st[1] - self.clock()
        if left > 0:
            self.refused += 1
            return left
        return 0.0

    def failed(self, addr: str) -> None:
        failures = self._state.get(addr, (0, 0.0))[0] + 1
        until = 0.0
        if failures >= self.free:
            until = self.clock() + min(self.max_s, self.base_s * 2 ** (failures - self.free))
        if len(self._state) >= self.max_entries:
            now = self.clock()
            self._state = {k: v for k, v in self._state.items() if v[1] > now}
        self._state[addr] = (failures, until)

    def succeeded(self, addr: str) -> None:
        self._state.pop(addr, None)


class StreamCounter:
    """Open streams per token name."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open: dict[str, int] = {}

    def acquire(self, name: str) -> bool:
        n = self.open.get(name, 0)
        if self.limit and n >= self.limit:
            return False
        self.open[name] = n + 1
        return True

    def release(self, name: str) -> None:
        n = self.open.get(name, 0) - 1
        if n > 0:
            self.open[name] = n
        else:
            self.open.pop(name, None)


def peer_address(conn) -> str:
    peer = conn.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
