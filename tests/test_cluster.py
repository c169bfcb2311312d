"""Three `mapsvc serve` nodes on a real Redis bus behind a real HAProxy (TCP mode): a station uploaded to any
node reaches clients on every node, /v1/stations shows the whole network and which node holds each client,
and when a node is SIGKILLed its clients reconnect through HAProxy to the others and keep receiving."""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import mapsvc_cmd
from mapsvc.engines import free_port
from tests.cors.ntrip_helpers import GMSD7, Pusher, basic, epochs_of, need

from cors.monitor import RtcmFramer

pytestmark = pytest.mark.slow


class Rover(threading.Thread):
    """An NTRIP 1.0 client that reconnects (through the balancer) whenever its stream ends."""

    def __init__(self, port, mount, user, token):
        super().__init__(daemon=True)
        self.port, self.mount, self.user, self.token = port, mount, user, token
        self.frames: list[tuple[float, bytes]] = []
        self.connects = 0
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                s.sendall(f"GET /{self.mount} HTTP/1.0\r\nUser-Agent: NTRIP pytest\r\n"
                          f"Authorization: {basic(self.user, self.token)}\r\n\r\n".encode())
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
                    self.frames += [(now, f) for f in framer.feed(data)]
                s.close()
            except OSError:
                time.sleep(0.3)

    def frames_since(self, t):
        return [f for ts, f in self.frames if ts >= t]


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_three_nodes_on_the_bus_survive_a_killed_node(tmp_path, redis_server, haproxy_factory):
    epochs = epochs_of(need(GMSD7))
    env = dict(os.environ, MAPSVC_HOME=str(tmp_path / "home"), MAPSVC_BUS=redis_server.url)
    run = lambda *a: subprocess.run(mapsvc_cmd() + list(a), env=env, capture_output=True, text=True, timeout=60)
    assert run("stations", "add", "GMSD", "--mountpoint", "GMSD7", "--ecef",
               "-3607665.0,4147868.0,3223717.0", "--password", "pw").returncode == 0
    vehicle = run("tokens", "create", "--role", "vehicle", "--name", "car").stdout.strip().split()[-1]
    nodes = {}
    for n in ("n1", "n2", "n3"):
        http, ntrip = free_port(), free_port()
        proc = subprocess.Popen(mapsvc_cmd() + ["serve", "--node-id", n, "--port", str(http),
                                                "--ntrip-port", str(ntrip)],
                                env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{n}.log", "w"))
        nodes[n] = {"http": http, "ntrip": ntrip, "proc": proc}
    pusher = None
    rovers = []
    try:
        for n, d in nodes.items():
            _wait(lambda: _listening(d["ntrip"]) and _listening(d["http"]), 60, f"node {n}")
        lb = haproxy_factory({"ntrip": [d["ntrip"] for d in nodes.values()],
                              "http": [d["http"] for d in nodes.values()]})
        time.sleep(1.5)  # health checks mark every node up
        # the station's upload goes through the balancer too: any node takes it
        pusher = Pusher(lb.ports["ntrip"], "GMSD7", "pw", epochs, period=0.2, loop=True)
        pusher.start()
        auth = {"Authorization": f"Bearer {vehicle}"}
        api = f"http://127.0.0.1:{lb.ports['http']}/v1"

        def station():
            try:  # gunicorn workers may still be starting on a busy machine
                doc = requests.get(f"{api}/stations", headers=auth, timeout=10).json()
            except requests.RequestException:
                return None
            return {s["id"]: s for s in doc["stations"]}.get("GMSD")

        _wait(lambda: (s := station()) and s["up"] and s["source_node"], 90, "the station up on the bus")
        rovers = [Rover(lb.ports["ntrip"], "GMSD7", "car", vehicle) for _ in range(6)]
        for r in rovers:
            r.start()
            time.sleep(0.1)
        # leastconn spreads the six over the three nodes; the network view says which node holds whom
        st = _wait(lambda: (s := station()) and s["clients"] == 6 and len(s["clients_by_node"]) == 3 and s,
                   30, "six clients in /v1/stations")
        assert sum(st["clients_by_node"].values()) == 6 and all(v >= 1 for v in st["clients_by_node"].values())
        t0 = time.monotonic()
        time.sleep(3)
        sent = {ep for _, ep in pusher.sent}
        for r in rovers:
            got = r.frames_since(t0)
            assert len(got) >= 5, "a client got no corrections"
            # every node, whichever took the upload, sends the station's own frames, CRC intact
            assert b"".join(got[-3:]) in b"".join(sent) or all(any(f in ep for ep in sent) for f in got[-3:])
        # kill a node that holds clients but not the upload
        victim = next(n for n in nodes if n != st["source_node"])
        held = st["clients_by_node"][victim]
        connects_before = sum(r.connects for r in rovers)
        nodes[victim]["proc"].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _wait(lambda: sum(r.connects for r in rovers) >= connects_before + held, 15,
              f"the {held} clients of {victim} reconnecting")
        time.sleep(2)
        back = time.monotonic()
        assert back - killed_at < 17
        time.sleep(3)
        for r in rovers:
            assert len(r.frames_since(back)) >= 5, "a client stopped receiving after the node was killed"
        assert sum(r.connects for r in rovers) == connects_before + held  # nobody else was disturbed
        st = _wait(lambda: (s := station()) and victim not in s["clients_by_node"] and s["clients"] == 6 and s,
                   20, "the network view without the killed node")
        assert set(st["clients_by_node"]) <= set(nodes) - {victim}
    finally:
        for r in rovers:
            r.stop_event.set()
        if pusher is not None:
            pusher.stop()
        for d in nodes.values():
            if d["proc"].poll() is None:
                d["proc"].send_signal(signal.SIGINT)
        for n, d in nodes.items():
            try:
                d["proc"].wait(20)
            except subprocess.TimeoutExpired:
                d["proc"].kill()


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False
