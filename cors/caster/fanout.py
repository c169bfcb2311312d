"""Fan-out: one payload to every client of a feed, with non-blocking writes, from a few threads.

A client whose transport backlog exceeds the limit is reported as slow (the caller drops it), so
a slow client never delays the others.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

PARALLEL_FANOUT_MIN = 256  # below this many clients one thread writes faster than handing out work


class FanoutPool:
    """The event-loop thread plus ``threads - 1`` workers writing to client sockets together."""

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads - 1, "fanout") if self.threads > 1 else None

    def write(self, clients, data: bytes, chunked: bytes | None, limit: int) -> list:
        """Write ``data`` (``chunked`` to NTRIP 2.0 clients) to every client; returns the slow ones."""
        if self._pool is None or len(clients) < PARALLEL_FANOUT_MIN:
            slow = []
            for c in clients:
                t = c.transport
                if t.get_write_buffer_size() > limit:
                    slow.append(c)
                else:
                    t.write(chunked if c.chunked else data)
            return slow
        k = self.threads
        items = list(clients)
        futures = [self._pool.submit(send_direct, items[i::k], data, chunked, limit) for i in range(1, k)]
        rest, slow = send_direct(items[0::k], data, chunked, limit)
        for f in futures:
            r, s = f.result()
            rest += r
            slow += s
        for c, tail in rest:
            c.transport.write(tail)
        return slow

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def send_direct(part: list, data: bytes, chunked: bytes | None, limit: int):
    """Write one payload straight to the sockets of ``part`` (run by several threads at once).

    Why: on loopback each send() costs ~9 us of kernel time (the receiver's TCP input runs in the
    sender's context) and os.write releases the GIL, so several threads overlap those syscalls.
    The event loop thread is itself inside this call, so no transport changes meanwhile (the
    transport methods used here only read). A client with bytes already queued in its transport
    keeps its order: the payload is queued behind them; whatever the kernel does not take now is
    queued after this call; over ``limit`` queued bytes the client is reported as slow.
    Returns (clients with bytes to queue, slow clients).
    """
    rest, slow = [], []
    write = os.write
    for c in part:
        t = c.transport
        queued = t.get_write_buffer_size()
        payload = chunked if c.chunked else data
        if queued:
            if queued > limit:
                slow.append(c)
            else:
                rest.append((c, payload))
            continue
        if t.is_closing() or c.fd < 0:
            continue
        try:
            n = write(c.fd, payload)
        except BlockingIOError:
            n = 0
        except OSError:
            continue  # the transport sees the error itself
        if n < len(payload):
            rest.append((c, payload[n:]))
    return rest, slow
