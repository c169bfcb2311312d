"""Three `mapsvc serve` nodes on real PostgreSQL + Redis behind a real HAProxy (TCP mode): a release published
through one node's configuration is fetched through the balancer from the others; a station uploaded to any
node reaches clients on every node; /v1/stations shows the whole network and which node holds each client;
when a node is SIGKILLed its clients reconnect through HAProxy to the others and keep receiving."""
import hashlib
import time
from pathlib import Path

import pytest
import requests

from conftest import LANELET2_DIR, require_shared
from mapsvc.cluster import Cluster, NtripClient, wait_for
from mapsvc.engines import EngineMissing
from tests.gnss.ntrip_helpers import GMSD7, Pusher, epochs_of, need

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster", nodes=3)
    try:
        c.start_engines()
    except EngineMissing as exc:
        c.stop()
        pytest.skip(str(exc))
    yield c
    c.stop()


def test_three_nodes_share_store_and_bus_and_survive_a_killed_node(cluster):
    epochs = epochs_of(need(GMSD7))
    osm = require_shared(LANELET2_DIR / "tier4_kashiwanoha_lanelet2_map.osm")
    cluster.cli("stations", "add", "GMSD", "--mountpoint", "GMSD7", "--ecef", "-3607665.0,4147868.0,3223717.0",
                "--password", "pw")
    vehicle = cluster.cli("tokens", "create", "--role", "vehicle", "--name", "car").stdout.strip().split()[-1]
    cluster.start_nodes()
    lb = cluster.lb
    # tokens and stations live in PostgreSQL: no node (nor the operator's CLI) has them in a home of its own
    homes = [Path(cluster.env["MAPSVC_HOME"])] + [Path(cluster.node_env(n.node_id)["MAPSVC_HOME"])
                                                  for n in cluster.members]
    assert len(set(homes)) == 4
    assert not any((h / f).exists() for h in homes for f in ("tokens.sqlite", "stations.sqlite"))
    auth = {"Authorization": f"Bearer {vehicle}"}
    api = f"http://127.0.0.1:{lb.ports['http']}/v1"

    def get(url, **kw):
        try:  # gunicorn workers may still be starting on a busy machine
            return requests.get(url, headers=auth, timeout=10, **kw)
        except requests.RequestException:
            return None

    # a release published into the shared PostgreSQL store is served by every node
    cluster.cli("publish", str(osm), "--release", "r1", "--level", "15")
    for n in cluster.members:
        node_api = f"http://127.0.0.1:{n.http}/v1"
        m = wait_for(lambda: (r := get(f"{node_api}/releases/r1")) is not None and r.status_code == 200 and r,
                     60, f"release r1 on {n.node_id}").json()
        tile = m["tiles"][0]
        body = get(f"{node_api}/releases/r1/tiles/{tile['id']}").content
        assert hashlib.sha256(body).hexdigest() == tile["sha256"]

    # behind the balancer the API sees the client's address (gunicorn reads HAProxy's PROXY line), so its
    # per-address limits and logs are per client; the client here is 127.0.0.3, the balancer 127.0.0.1
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", lb.ports["http"], timeout=10, source_address=("127.0.0.3", 0))
    conn.request("GET", "/v1/health")
    assert conn.getresponse().status == 200
    conn.close()
    wait_for(lambda: any('127.0.0.3 "GET /v1/health' in p.read_text(errors="replace")
                         for p in (cluster.root / "logs").glob("n*.log")), 10, "the client's address in an access log")

    pusher = Pusher(lb.ports["ntrip"], "GMSD7", "pw", epochs, period=0.2, loop=True)  # to whichever node
    pusher.start()
    clients = []
    try:
        def station():
            r = get(f"{api}/stations")
            return None if r is None else {s["id"]: s for s in r.json()["stations"]}.get("GMSD")

        wait_for(lambda: (s := station()) and s["up"] and s["source_node"], 90, "the station up on the bus")
        clients = [NtripClient(lb.ports["ntrip"], "GMSD7", "car", vehicle) for _ in range(6)]
        for c in clients:
            c.start()
            time.sleep(0.1)
        # leastconn spreads the six over the three nodes; the network view says which node holds whom
        st = wait_for(lambda: (s := station()) and s["clients"] == 6 and len(s["clients_by_node"]) == 3 and s,
                      30, "six clients in /v1/stations")
        assert all(v >= 1 for v in st["clients_by_node"].values())
        t0 = time.monotonic()
        time.sleep(3)
        sent = b"".join(ep for _, ep in pusher.sent)
        for c in clients:
            got = c.frames_since(t0)
            assert len(got) >= 5, "a client got no corrections"
            assert all(f in sent for f in got)  # the station's own frames, whichever node took the upload
        victim = next(n for n in cluster.members if n.node_id != st["source_node"])
        held = st["clients_by_node"][victim.node_id]
        connects = sum(c.connects for c in clients)
        victim.kill()
        killed_at = time.monotonic()
        wait_for(lambda: sum(c.connects for c in clients) >= connects + held, 15,
                 f"the {held} clients of {victim.node_id} reconnecting")
        assert time.monotonic() - killed_at < 15
        back = time.monotonic()
        time.sleep(3)
        for c in clients:
            assert len(c.frames_since(back)) >= 5, "a client stopped receiving after the node was killed"
        assert sum(c.connects for c in clients) == connects + held  # nobody else was disturbed
        st = wait_for(lambda: (s := station()) and victim.node_id not in s["clients_by_node"]
                      and s["clients"] == 6 and s, 20, "the network view without the killed node")
    finally:
        for c in clients:
            c.stop()
        pusher.stop()
