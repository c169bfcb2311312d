"""Concurrent NTRIP clients on loopback at 1 Hz: our caster (1,000 / 5,000 / 10,000) beside str2str (32).

A real station stream (GMSD7 capture, ~1 kB per epoch) is pushed into the caster at one epoch per
second, the emit time of every epoch logged. A load generator in a separate process (epoll, one
socket per NTRIP 1.0 client) takes the kernel's arrival time of every burst (SO_TIMESTAMPNS);
latency = whole epoch at the client socket - epoch emitted (the caster receives the epoch within
microseconds of its emission on loopback, so this is the caster's receive-to-client delivery time
plus loopback hops). Caster CPU and RSS via psutil.

str2str's caster binds 0.0.0.0, so its run happens in a private network namespace with only ``lo``
(``unshare -n``), never on a real interface. Run alone: ``python -m benchmarks.bench_ntrip``.
"""
from __future__ import annotations

import argparse
import base64
import bisect
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT.parent / "shared" / "data" / "gnss" / "rtcm3" / "GMSD7_20121014.rtcm3"
RESULTS = ROOT / "benchmarks" / "results"
SIZES = (1000, 5000, 10000)
STR2STR_CLIENTS = 32
MEASURE_S = 15.0
MOUNT = "GMSD7"
TOKENS = 100  # clients share 100 vehicle tokens round-robin
HOSTILE_CLIENTS = 1000  # the calm/hostile pair is measured at this many clients
HOSTILE = b"\xd3\x03\xff"  # issue 14: every third byte a frame candidate of 1023 bytes


class Hostile(threading.Thread):
    """A second, authenticated station sending the crafted pattern as fast as the caster reads it."""

    def __init__(self, port: int, mount: str, password: str):
        super().__init__(daemon=True)
        self.port, self.mount, self.password = port, mount, password
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(f"SOURCE {self.password} /{self.mount}\r\n\r\n".encode())
        s.recv(100)
        junk = HOSTILE * 21845
        s.settimeout(0.5)
        while not self.stop_event.is_set():
            try:
                self.sent += s.send(junk)
            except socket.timeout:
                continue
            except OSError:
                break
        s.close()


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def capture_epochs() -> list[bytes]:
    """The capture cut into epochs (all frames up to an MSM with the multiple-message bit clear)."""
    from pyrtcm import RTCMReader

    from cors.monitor import RtcmFramer, constellation

    epochs, cur = [], []
    for f in RtcmFramer().feed(CAPTURE.read_bytes()):
        cur.append(f)
        if constellation((f[3] << 4) | (f[4] >> 4)) and not RTCMReader.parse(f).DF393:
            epochs.append(b"".join(cur))
            cur = []
    return epochs


class Feeder(threading.Thread):
    """One epoch per second: pushed as an NTRIP 1.0 SOURCE (ours) or served on TCP (str2str -in tcpcli)."""

    def __init__(self, epochs, *, caster_port=None, password="", serve_port=None):
        super().__init__(daemon=True)
        self.epochs, self.caster_port, self.password, self.serve_port = epochs, caster_port, password, serve_port
        self.emits: list[tuple[float, int]] = []  # (monotonic, bytes)
        self.stop_event = threading.Event()
        self.error = None

    def _socket(self) -> socket.socket:
        if self.caster_port is not None:
            s = socket.create_connection(("127.0.0.1", self.caster_port), timeout=10)
            s.sendall(f"SOURCE {self.password} /{MOUNT}\r\nSource-Agent: NTRIP bench\r\n\r\n".encode())
            reply = s.recv(100)
            if not reply.startswith(b"ICY 200 OK"):
                raise RuntimeError(f"caster refused the source: {reply!r}")
            return s
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.serve_port))
        srv.listen(1)
        conn, _ = srv.accept()
        srv.close()
        return conn

    def run(self):
        try:
            s = self._socket()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.monotonic()
            i = 0
            while not self.stop_event.is_set():
                due = t0 + i
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ep = self.epochs[i % len(self.epochs)]
                self.emits.append((time.time(), len(ep)))
                s.sendall(ep)
                i += 1
            s.close()
        except Exception as exc:  # reported by the caller
            self.error = exc


# --- load generator (separate process) ------------------------------------------------------------------
# Plain epoll + recvmsg with SO_TIMESTAMPNS: each burst is stamped with the kernel's arrival time at
# the client socket, so the load generator's own CPU queueing (10,000 sockets on one core) does not
# count as caster latency. The application-side receive time is recorded too (column "app p99").

_TS = struct.Struct("qq")
READ_PAUSE_S = 0.02
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; Python does not export it


def _loadgen(port, n, creds, seconds, out, reconnect: bool = False):
    """``reconnect``: a client whose connection closes while measuring dials its balancer again (as a rover
    does, after 0.5 s) and the time from losing its stream to its next data is recorded as its gap."""
    import select

    ep = select.epoll()
    socks, ok, head, owner = {}, {}, {}, {}
    bursts = {i: [] for i in range(n)}
    lost_at, gaps = {}, []
    redial: list[tuple[float, int]] = []  # (due, client)
    t0 = time.monotonic()
    ports = [int(p) for p in str(port).split(",")]  # several balancers: clients spread round-robin

    def dial(i: int) -> bool:
        user, pw = creds[i % len(creds)]
        auth = base64.b64encode(f"{user}:{pw}".encode()).decode()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", ports[i % len(ports)]))
            s.sendall((f"GET /{MOUNT} HTTP/1.0\r\nUser-Agent: NTRIP bench/1.0\r\n"
                       f"Authorization: Basic {auth}\r\n\r\n").encode())
        except OSError:
            s.close()
            return False
        s.setblocking(False)
        fd = s.fileno()
        socks[fd], ok[fd], head[fd], owner[fd] = s, None, b"", i
        ep.register(fd, select.EPOLLIN)
        return True

    for i in range(n):
        dial(i)
    deadline = time.monotonic() + 15
    t_from = float("inf")
    measuring = False
    anc_size = socket.CMSG_SPACE(_TS.size)
    while True:
        now = time.monotonic()
        if not measuring and (all(v is not None for v in ok.values()) or now > deadline):
            served = sum(1 for v in ok.values() if v)
            connect_s = now - t0
            print(f"CONNECTED {served} {n - served} {connect_s:.2f}", flush=True)
            measuring = True
            t_from = time.time() + 1.0  # settle one epoch, then measure
            t_end = now + 1.0 + seconds
            cpu0, wall0 = time.process_time(), now
        if measuring and now >= t_end:
            break
        while redial and redial[0][0] <= now:
            _, i = redial.pop(0)
            if not dial(i):
                redial.append((now + 0.5, i))
        events = ep.poll(0.2, len(socks) + 1)
        if measuring and events:
            # read in batches: 10,000 simulated rovers should not wake this process 10,000 times
            # while the caster is still writing (real rovers cost the caster host nothing); the
            # kernel timestamps stay exact, "app p99" grows by up to this pause
            time.sleep(READ_PAUSE_S)
            events = ep.poll(0, len(socks) + 1)
        for fd, _ev in events:
            s = socks.get(fd)
            if s is None:
                continue
            i = owner[fd]
            try:
                data, anc, _flags, _addr = s.recvmsg(65536, anc_size)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data, anc = b"", []
            app = time.time()
            if not data:
                ep.unregister(fd)
                was_ok = ok.pop(fd)
                s.close()
                del socks[fd], head[fd], owner[fd]
                if measuring and reconnect:
                    lost_at.setdefault(i, app)
                    redial.append((time.monotonic() + 0.5, i))
                elif was_ok:
                    lost_at.setdefault(i, app)
                continue
            if ok[fd] is None:
                head[fd] += data
                h = head[fd]
                if h.startswith(b"ICY 200 OK\r\n"):  # str2str ends its reply with one CRLF
                    data = h[12:]
                    data = data[2:] if data.startswith(b"\r\n") else data
                    ok[fd] = True
                elif b"\r\n\r\n" in h:
                    ok[fd] = False
                    continue
                else:
                    continue
                if not data:
                    continue
            kern = app
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                    sec, nsec = _TS.unpack(cdata[:_TS.size])
                    kern = sec + nsec * 1e-9
            if i in lost_at:  # a redialled client's first data: its stream is back
                gaps.append(kern - lost_at.pop(i))
            if kern < t_from:
                continue
            b = bursts[i]
            if b and kern - b[-1][1] < 0.3:
                b[-1][1] = kern
                b[-1][2] = app
                b[-1][3] += len(data)
            else:
                b.append([kern, kern, app, len(data)])
    t_to = time.time()
    cpu_pct = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100  # it shares the cores too
    still = sum(1 for fd in socks if ok[fd])
    rows = [(i, *b) for i, bl in bursts.items() for b in bl]
    np.save(out, np.array(rows, dtype=float).reshape(-1, 5))
    with open(out + ".json", "w") as fh:
        json.dump({"served": served, "failed": n - served, "connect_s": connect_s, "still_connected": still,
                   "t_from": t_from, "t_to": t_to, "lost": len(gaps) + len(lost_at),
                   "not_back": len(lost_at), "gaps_s": gaps, "cpu_pct": cpu_pct}, fh)
    for s in socks.values():
        s.close()


def loadgen_main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", help="caster port, or several comma-separated")
    ap.add_argument("--n", type=int)
    ap.add_argument("--creds")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--out")
    ap.add_argument("--reconnect", action="store_true")
    a = ap.parse_args(argv)
    raise_nofile()
    creds = json.loads(Path(a.creds).read_text())
    _loadgen(a.port, a.n, creds, a.seconds, a.out, reconnect=a.reconnect)


# --- one measured run -----------------------------------------------------------------------------------

def _measure(server_pid, port, n: int, creds, feeder: Feeder, work: Path, label: str,
             extra_pids: dict | None = None, *, seconds: float | None = None,
             during: tuple[float, Callable[[], None]] | None = None) -> dict:
    """One row; ``server_pid`` is the caster, or a dict name -> pid of every process whose CPU counts
    (``extra_pids``: processes reported beside it, e.g. the balancer and the bus). ``during`` = (delay,
    action): the action runs that long after the clients are connected (e.g. killing a node), and the
    clients then redial whatever closes; the row reports how many lost their stream and how soon it was back."""
    import psutil

    creds_file = work / "creds.json"
    creds_file.write_text(json.dumps(creds))
    out = str(work / f"bursts_{label}_{n}")
    seconds = seconds or MEASURE_S
    gen = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_ntrip", "--loadgen", "--port", str(port),
                            "--n", str(n), "--creds", str(creds_file), "--seconds", str(seconds),
                            "--out", out] + (["--reconnect"] if during else []),
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = gen.stdout.readline().split()
    if not line or line[0] != "CONNECTED":
        gen.kill()
        raise RuntimeError(f"load generator failed: {gen.stderr.read()[-2000:]}")
    if during:
        threading.Timer(*during).start()
    servers = server_pid if isinstance(server_pid, dict) else {"caster": server_pid}
    procs = {k: psutil.Process(p) for k, p in {**servers, **(extra_pids or {})}.items()}
    def cpu_of() -> dict:
        out = {}
        for k, p in procs.items():
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:  # a node killed on purpose: no figure for it
                continue
            out[k] = t.user + t.system
        return out

    t0s, w0 = cpu_of(), time.monotonic()
    gen.wait(seconds + 120)
    t1s, w1 = cpu_of(), time.monotonic()
    rss = sum(procs[k].memory_info().rss for k in servers if k in t1s) / 2**20
    per_cpu = {k: (t1s[k] - t0s[k]) / (w1 - w0) * 100 for k in procs if k in t1s}
    if gen.returncode:
        raise RuntimeError(f"load generator failed: {gen.stderr.read()[-2000:]}")
    meta = json.loads(Path(out + ".json").read_text())
    bursts = np.load(out + ".npy")
    emits = [t for t, _ in feeder.emits]
    sizes = [s for _, s in feeder.emits]
    lat, app_lat, complete = [], [], 0
    for _client, first, last, app_last, nbytes in bursts:
        k = bisect.bisect_right(emits, first) - 1
        if k < 0 or emits[k] < meta["t_from"] - 1.0:
            continue
        lat.append(last - emits[k])
        app_lat.append(app_last - emits[k])
        complete += int(nbytes == sizes[k])
    lat_ms, app_ms = np.array(lat) * 1e3, np.array(app_lat) * 1e3
    epochs_sent = sum(1 for t in emits if meta["t_from"] <= t < meta["t_to"] - 0.2)
    cpu = sum(per_cpu.get(k, 0.0) for k in servers)
    row = {
        "caster": label, "clients": n, "load avg": round(os.getloadavg()[0], 1), "served": meta["served"], "held": meta["still_connected"],
        "connect_s": round(meta["connect_s"], 2),
        "epochs/client": round(len(lat) / max(meta["served"], 1), 1), "epochs sent": epochs_sent,
        "complete %": round(100.0 * complete / max(len(lat), 1), 1),
        "p50 ms": round(float(np.percentile(lat_ms, 50)), 1) if len(lat_ms) else None,
        "p99 ms": round(float(np.percentile(lat_ms, 99)), 1) if len(lat_ms) else None,
        "max ms": round(float(lat_ms.max()), 1) if len(lat_ms) else None,
        "app p99 ms": round(float(np.percentile(app_ms, 99)), 1) if len(app_ms) else None,
        "cpu %": round(cpu, 1), "rss MB": round(rss, 1),
    }
    if len(procs) > 1:
        row["cpu % by process"] = {k: round(v, 1) for k, v in per_cpu.items()}
        row["cpu % by process"]["loadgen"] = round(meta["cpu_pct"], 1)
    if during:
        gaps = np.array(meta["gaps_s"])
        row.update({"lost": meta["lost"], "not back": meta["not_back"],
                    "back p50 s": round(float(np.median(gaps)), 1) if len(gaps) else None,
                    "back max s": round(float(gaps.max()), 1) if len(gaps) else None})
    return row


def _ours(sizes, work: Path) -> list[dict]:
    """Our caster as `mapsvc serve --no-http` (the product's own entry point) in a child process."""
    home = work / "home"
    env = dict(os.environ, MAPSVC_HOME=str(home))
    from cors.stations import Station, StationRegistry
    from tokens import TokenStore

    reg = StationRegistry(home / "stations.sqlite")
    reg.add(Station(id="GMSD", mountpoint=MOUNT, ecef=(-3607665.0, 4147868.0, 3223717.0), name="GMSD"),
            password="bench-src")
    reg.add(Station(id="EVIL", mountpoint="EVIL0", ecef=(-2148744.0, 4426641.0, 4044655.0), name="EVIL"),
            password="bench-evil")
    reg.close()
    store = TokenStore(home / "tokens.sqlite")
    creds = [(f"car{i}", store.create("vehicle", f"car{i}")) for i in range(TOKENS)]
    store.close()
    port = free_port()
    exe = Path(sys.executable).with_name("mapsvc")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from mapsvc.cli import main; main()"]
    server = subprocess.Popen(cmd + ["serve", "--no-http", "--ntrip-port", str(port),
                                                "--max-streams-per-token", "0"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows = []
    feeder = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        feeder = Feeder(capture_epochs(), caster_port=port, password="bench-src")
        feeder.start()
        time.sleep(2.5)
        if feeder.error:
            raise feeder.error
        for n in sizes:
            rows.append(_measure(server.pid, port, n, creds, feeder, work, "ours"))
            time.sleep(1.0)
        if HOSTILE_CLIENTS in sizes:
            hostile = Hostile(port, "EVIL0", "bench-evil")
            hostile.start()
            t0 = time.monotonic()
            try:
                row = _measure(server.pid, port, HOSTILE_CLIENTS, creds, feeder, work, "ours+hostile")
            finally:
                hostile.stop_event.set()
                hostile.join(5)
            row["hostile kB/s sent"] = round(hostile.sent / 1024 / (time.monotonic() - t0), 1)
            rows.append(row)
    finally:
        if feeder is not None:
            feeder.stop_event.set()
        server.terminate()
        server.wait(10)
    return rows


def _str2str_session(n: int, out: str) -> None:
    """Inside a private network namespace: feeder -> str2str ntripc caster <- load generator."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="bench_s2s_"))
    feed_port, port = free_port(), free_port()
    feeder = Feeder(capture_epochs(), serve_port=feed_port)
    feeder.start()
    time.sleep(0.2)
    s2s = subprocess.Popen(["str2str", "-in", f"tcpcli://127.0.0.1:{feed_port}",
                            "-out", f"ntripc://bench:benchpw@:{port}/{MOUNT}:GMSD"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.5)
        row = _measure(s2s.pid, port, n, [("bench", "benchpw")], feeder, work, "str2str")
    finally:
        feeder.stop_event.set()
        s2s.terminate()
        s2s.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    Path(out).write_text(json.dumps(row))


def _theirs(n: int, work: Path) -> dict:
    if not shutil.which("str2str") or not shutil.which("unshare"):
        return {"caster": "str2str", "clients": n, "served": "str2str/unshare not installed"}
    out = work / "s2s.json"
    r = subprocess.run(["unshare", "-n", sys.executable, "-m", "benchmarks.bench_ntrip", "--str2str-session",
                        str(n), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if r.returncode or not out.exists():
        return {"caster": "str2str", "clients": n, "served": f"failed: {r.stderr.strip()[-200:]}"}
    return json.loads(out.read_text())


def run(results: dict | None = None, sizes=SIZES) -> dict:
    if not CAPTURE.exists():
        return {"title": "NTRIP fan-out", "rows": [],
                "notes": [f"../shared/data/gnss/rtcm3/{CAPTURE.name} absent: benchmark skipped"]}
    raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="bench_ntrip_"))
    try:
        rows = [_theirs(STR2STR_CLIENTS, work)]
        rows += _ours((STR2STR_CLIENTS,) + tuple(sorted(set(sizes) | {HOSTILE_CLIENTS})), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    target = next((r for r in rows if r["caster"] == "ours" and r["clients"] == 10000), None)
    notes = [
        f"1 Hz GMSD7 stream (~1 kB/epoch), {MEASURE_S:.0f} s measured per row; latency = epoch emitted "
        "-> whole epoch in the client socket (kernel timestamp); app p99 = when the load generator read it",
        "str2str runs in a private network namespace (it binds 0.0.0.0); it serves at most 32 clients",
        "load avg = 1-min load of the 2-core machine at the end of the row; the fan-out is kernel-bound "
        "(a bare os.write loop to 10,000 loopback sockets takes 86-114 ms on one core here), so other "
        "work on the machine moves the 10,000-client p99 across the 100 ms line",
        "target: 10,000 clients held with p99 < 100 ms -> " + (
            "met" if target and target.get("p99 ms") is not None and target["p99 ms"] < 100
            and target["held"] == 10000 else f"NOT met ({target})"),
    ]
    calm = next((r for r in rows if r["caster"] == "ours" and r["clients"] == HOSTILE_CLIENTS), None)
    hostile = next((r for r in rows if r["caster"] == "ours+hostile"), None)
    if calm and hostile and calm.get("p99 ms") and hostile.get("p99 ms") is not None:
        ratio = hostile["p99 ms"] / calm["p99 ms"]
        notes.append(f"{HOSTILE_CLIENTS} clients while another source sends d3 03 ff repeated "
                     f"({hostile.get('hostile kB/s sent')} kB/s written by it): p99 {hostile['p99 ms']} ms vs calm "
                     f"{calm['p99 ms']} ms = {ratio:.2f}x (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")
    result = {"title": "NTRIP caster fan-out (1 Hz, loopback)", "rows": rows, "notes": notes}
    if results is not None:
        results["ntrip"] = result
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--str2str-session":
        _str2str_session(int(sys.argv[2]), sys.argv[3])
        return
    from benchmarks.__main__ import print_table

    result = run()
    print_table(result["title"], result["rows"])
    for note in result["notes"]:
        print(f"  - {note}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_ntrip.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
