"""Local engines from Debian packages: PostgreSQL + PostGIS, Redis and HAProxy, each in its own folder.

Used by the tests (throw-away folders), ``make cluster-demo`` (``var/cluster``) and the cluster benchmark.
Every server binds 127.0.0.1 on a free port; ``stop()`` ends it and only it. In production these engines run
on their own machines under systemd (README, "Production layout"); nothing here is for production.

PostgreSQL refuses to run as root, so as root the cluster is owned by and run as the ``postgres`` user
(created by the Debian package); otherwise as the current user.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class EngineMissing(RuntimeError):
    """The engine's binary is not installed (tests skip with this message)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Postgres:
    """A PostgreSQL 15 cluster with PostGIS in ``root`` (socket directory inside it, TCP on 127.0.0.1)."""
    root: Path
    port: int = 0
    database: str = "mapsvc"
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self, timeout: float = 60.0) -> "Postgres":
        if not (PG_BIN / "postgres").exists():
            raise EngineMissing("PostgreSQL 15 is not installed (Debian postgresql-15-postgis-3)")
        if not Path("/usr/share/postgresql/15/extension/postgis.control").exists():
            raise EngineMissing("PostGIS for PostgreSQL 15 is not installed (Debian postgresql-15-postgis-3)")
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        data, sock = self.root / "data", self.root / "socket"
        sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            for p in (self.root, sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            # the owner must reach the folder: open the path's parents for traversal only
            for parent in self.root.resolve().parents:
                if parent.stat().st_mode & 0o001 == 0:
                    os.chmod(parent, parent.stat().st_mode | 0o001)
        if not (data / "PG_VERSION").exists():
            subprocess.run(self._as_owner() + [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                               "--auth=trust", "-E", "UTF8", "--no-sync", "-N"],
                           check=True, capture_output=True)
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(
            self._as_owner() + [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(self.port),
                                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}",
                                "-c", "max_connections=200", "-c", "fsync=on"],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "postgres.log", "ab"))
        _wait_port(self.port, self.proc, timeout, "postgres")
        self._create_database(timeout)
        return self

    def _create_database(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:  # the port opens a moment before connections are accepted
            try:
                admin = psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname=%s", (self.database,)).fetchone():
                admin.execute(f'CREATE DATABASE "{self.database}"')
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    def stop(self, fast: bool = False) -> None:
        """SIGTERM: PostgreSQL's "smart" shutdown; ``fast``: every session is cut at once (as a failover
        does), through pg_ctl (the server runs under runuser, which passes on only some signals)."""
        if fast and self.proc is not None and self.proc.poll() is None:
            subprocess.run(self._as_owner() + [str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                                               "-w", "stop"], capture_output=True, timeout=60)
        _stop(self.proc, 30.0)


@dataclass
class Redis:
    """A redis-server in ``root``; ``persist`` keeps an append-only file there (streams survive a restart)."""
    root: Path
    port: int = 0
    persist: bool = False
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> "Redis":
        exe = shutil.which("redis-server")
        if exe is None:
            raise EngineMissing("redis-server is not installed (Debian redis-server)")
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root), "--save", "",
               "--appendonly", "yes" if self.persist else "no", "--daemonize", "no",
               "--logfile", str(self.root / "redis.log")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, timeout, "redis-server")
        return self

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class HAProxy:
    """HAProxy in TCP mode: one frontend per service, each balancing over the nodes' ports.

    ``services`` maps a name to the backend ports, e.g. ``{"ntrip": [p1, p2, p3], "http": [h1, h2, h3]}``.
    Health checks are TCP connects every 500 ms, so a killed node is out of rotation within a second and
    its clients' reconnects land on the others.
    """
    root: Path
    services: dict[str, list[int]]
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = field(default=None, repr=False)
    send_proxy: bool = False  # the mapsvc nodes take it (serve --proxy-from); other back ends may not

    def config(self) -> str:
        import resource

        # two descriptors per proxied connection, within what this machine lets a process open
        maxconn = max(256, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 64) // 2)
        lines = ["global", f"    maxconn {maxconn}", "defaults", "    mode tcp", "    timeout connect 2s",
                 "    timeout client 1h", "    timeout server 1h", "    option redispatch", "    retries 3"]
        for name, backends in self.services.items():
            lines += [f"frontend {name}_in", f"    bind 127.0.0.1:{self.ports[name]}",
                      f"    default_backend {name}_nodes",
                      f"backend {name}_nodes", "    balance leastconn"]
            # send-proxy: each connection starts with a PROXY v1 line naming the client (the nodes run with
            # --proxy-from; v1 because gunicorn reads only v1), so per-address limits see clients, not us
            proxy = " send-proxy" if self.send_proxy else ""
            lines += [f"    server n{i + 1} 127.0.0.1:{p} check inter 500 fall 1 rise 2{proxy}"
                      for i, p in enumerate(backends)]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> "HAProxy":
        exe = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
        if exe is None:
            raise EngineMissing("haproxy is not installed (Debian haproxy)")
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        for name in self.services:
            self.ports.setdefault(name, free_port())
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(self.config())
        check = subprocess.run([exe, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"{cfg}: {check.stderr.strip() or check.stdout.strip()}")
        self.proc = subprocess.Popen([exe, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "haproxy.log", "ab"))
        for name in self.services:
            _wait_port(self.ports[name], self.proc, timeout, "haproxy")
        return self

    def stop(self) -> None:
        _stop(self.proc)
