"""A local cluster: PostgreSQL, Redis, N `mapsvc serve` nodes and HAProxy in one folder (``make cluster-demo``,
the cluster test and benchmark). Production runs the same processes under systemd, each engine on its own
machine (README, "Production layout")."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mapsvc.engines import HAProxy, Postgres, Redis, free_port


def mapsvc_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("mapsvc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mapsvc"]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Node:
    node_id: str
    http: int
    ntrip: int
    proc: subprocess.Popen

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Cluster:
    """Engines and nodes under ``root``; ``env`` is what every node and CLI call of the cluster gets.

    On PostgreSQL each node has its own home (``nodes/nN``): releases, tokens and the station registry are in
    the database, blobs on the shared path, station streams and status on the bus; nothing else is shared.
    Without PostgreSQL the nodes share one home (its SQLite files)."""
    root: Path
    nodes: int = 3
    http: bool = True
    postgres: bool = True
    pg: Postgres | None = None
    redis: Redis | None = None
    lb: HAProxy | None = None
    members: list[Node] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()  # more `mapsvc serve` options for every node

    def start_engines(self) -> "Cluster":
        self.root = Path(self.root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis = Redis(self.root / "redis", persist=True).start()
        env = dict(os.environ, MAPSVC_HOME=str(self.root / "home"), MAPSVC_BUS=self.redis.url)
        if self.postgres:
            self.pg = Postgres(self.root / "postgres").start()
            env["MAPSVC_STORE"] = f"{self.pg.url}?blobs={self.root / 'shared'}"
        self.env = env
        return self

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(mapsvc_cmd() + list(args), env=self.env, capture_output=True, text=True, timeout=600)
        if check and done.returncode != 0:
            raise RuntimeError(f"mapsvc {' '.join(args[:2])}: {done.stderr.strip()[-500:]}")
        return done

    def node_env(self, node_id: str) -> dict:
        if not self.postgres:
            return self.env
        return dict(self.env, MAPSVC_HOME=str(self.root / "nodes" / node_id))

    def start_nodes(self, timeout: float = 120.0) -> "Cluster":
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        for i in range(1, self.nodes + 1):
            http, ntrip = free_port(), free_port()
            # the balancer names each client (PROXY header): per-address limits then apply to clients
            cmd = mapsvc_cmd() + ["serve", "--node-id", f"n{i}", "--port", str(http), "--ntrip-port", str(ntrip),
                                  "--proxy-from", "127.0.0.1"]
            if not self.http:
                cmd.append("--no-http")
            cmd += list(self.serve_args)
            proc = subprocess.Popen(cmd, env=self.node_env(f"n{i}"), stdout=subprocess.DEVNULL,
                                    stderr=open(logs / f"n{i}.log", "ab"))
            self.members.append(Node(f"n{i}", http, ntrip, proc))
        for n in self.members:
            wait_for(lambda: listening(n.ntrip) and (not self.http or listening(n.http)), timeout, f"node {n.node_id}")
        services = {"ntrip": [n.ntrip for n in self.members]}
        if self.http:
            services["http"] = [n.http for n in self.members]
        self.lb = HAProxy(self.root / "haproxy", services, send_proxy=True).start()
        time.sleep(1.5)  # health checks mark the nodes up
        return self

    def stop(self) -> None:
        for n in self.members:
            n.stop()
        for engine in (self.lb, self.redis, self.pg):
            if engine is not None:
                engine.stop()


class NtripClient(threading.Thread):
    """A vehicle's NTRIP 1.0 stream that reconnects whenever it ends (as a vehicle behind a balancer does);
    records each CRC-checked frame with its arrival time."""

    def __init__(self, port: int, mount: str, user: str, token: str, keep_frames: bool = True):
        super().__init__(daemon=True)
        from cors import ntrip

        self.port, self.mount = port, mount
        self.request = ntrip.client_request(
            ntrip.NtripURL("ntrip", "127.0.0.1", port, mount, user, token), 1, agent="NTRIP mapsvc-cluster")
        self.keep_frames = keep_frames
        self.frames: list[tuple[float, bytes]] = []
        self.received = 0
        self.connects = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        from cors.monitor import RtcmFramer

        while not self.stop_event.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                s.sendall(self.request)
                head = s.recv(12)
                if not head.startswith(b"ICY 200 OK"):
                    s.close()
                    time.sleep(0.5)
                    continue
                self.connects += 1
                framer = RtcmFramer()
                framer.feed(head[12:])
                s.settimeout(3)
                while not self.stop_event.is_set():
                    data = s.recv(65536)
                    if not data:
                        break
                    now = time.monotonic()
                    got = framer.feed(data)
                    self.received += len(got)
                    if self.keep_frames:
                        self.frames += [(now, f) for f in got]
                s.close()
            except OSError:
                time.sleep(0.3)

    def frames_since(self, t: float) -> list[bytes]:
        return [f for ts, f in self.frames if ts >= t]

    def stop(self) -> None:
        self.stop_event.set()
