"""`make cluster-demo`: PostgreSQL + PostGIS, Redis, three `mapsvc serve` nodes and HAProxy, all from Debian
packages with their data under ``var/cluster``; then the scale-out story end to end:

1. a release published with node 1's configuration is fetched through node 2;
2. a real GEONET base (shipped in the cssrlib wheel) is replayed into node 1 while vehicles connected through
   HAProxy, on the other nodes, receive it; ``/v1/stations`` shows which node holds each vehicle;
3. node 3 is SIGKILLed and its vehicles come back through HAProxy on the others.

Everything is stopped at the end (``--keep`` leaves it running until Ctrl-C).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

import requests

from mapsvc.cluster import Cluster, NtripClient, mapsvc_cmd, wait_for


def say(msg: str) -> None:
    print(f"[cluster-demo] {msg}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mapsvc.cluster_demo", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="var/cluster", help="where the engines and nodes keep their data")
    ap.add_argument("--vehicles", type=int, default=9)
    ap.add_argument("--keep", action="store_true", help="leave the cluster running until Ctrl-C")
    args = ap.parse_args(argv)

    from cors.demo import GEONET_3034_ECEF, cssrlib_data
    from mapsvc.demo import roadspec_path

    cluster = Cluster(Path(args.dir), nodes=3)
    replay = None
    clients: list[NtripClient] = []
    try:
        say(f"starting PostgreSQL + PostGIS and Redis under {cluster.root}")
        cluster.start_engines()
        say(f"  store {cluster.env['MAPSVC_STORE'].split('?')[0]}, bus {cluster.env['MAPSVC_BUS']}")
        stamp = time.strftime("%Y%m%d%H%M%S")
        sid, mount, password = "3034", "GEONET3034", "demo-" + stamp
        cluster.cli("stations", "remove", sid, check=False)
        cluster.cli("stations", "add", sid, "--mountpoint", mount, "--ecef", ",".join(map(str, GEONET_3034_ECEF)),
                    "--password", password, "--name", "GEONET 3034 (replay)")
        token = cluster.cli("tokens", "create", "--role", "vehicle", "--name", f"fleet-{stamp}").stdout.split()[-1]
        say("starting three nodes (caster + HTTP API each) and HAProxy in TCP mode")
        cluster.start_nodes()
        n1, n2, n3 = cluster.members
        lb = cluster.lb
        say(f"  nodes: " + ", ".join(f"{n.node_id} http:{n.http} ntrip:{n.ntrip}" for n in cluster.members))
        say(f"  HAProxy: NTRIP 127.0.0.1:{lb.ports['ntrip']}, HTTP 127.0.0.1:{lb.ports['http']}")
        say(f"  each node has its own home under {cluster.root / 'nodes'}: releases, tokens and stations are "
            f"in PostgreSQL, tile blobs on the shared path, station streams on Redis")

        osm = cluster.root / "yizhuang_pilot.osm"
        cluster.cli("build", str(roadspec_path()), "-o", str(osm))
        release = f"cluster-{stamp}"
        say(f"1/3 publishing release {release} with node 1's configuration (PostgreSQL store, shared blobs)")
        cluster.cli("publish", str(osm), "--release", release)
        auth = {"Authorization": f"Bearer {token}"}
        url = f"http://127.0.0.1:{n2.http}/v1/releases/{release}"
        manifest = wait_for(lambda: _ok(url, auth), 60, "the release on node 2").json()
        tile = manifest["tiles"][0]
        body = requests.get(f"{url}/tiles/{tile['id']}", headers=auth, timeout=10).content
        ok = hashlib.sha256(body).hexdigest() == tile["sha256"]
        say(f"    node 2 serves it: {len(manifest['tiles'])} tiles, tile {tile['id']} sha256 "
            f"{'matches' if ok else 'DOES NOT MATCH'} the signed manifest")

        say(f"2/3 replaying GEONET 3034 into node 1; {args.vehicles} vehicles connect through HAProxy")
        files = cssrlib_data()
        replay = subprocess.Popen(
            mapsvc_cmd() + ["replay", str(files["base"]), "--nav", str(files["nav"]), "--loop", "--speed", "1",
                            "--to", f"ntrip://{sid}:{password}@127.0.0.1:{n1.ntrip}/{mount}"],
            env=cluster.env, stdout=subprocess.DEVNULL, stderr=open(cluster.root / "logs" / "replay.log", "ab"))
        stations = f"http://127.0.0.1:{lb.ports['http']}/v1/stations"
        wait_for(lambda: _station(stations, auth, sid, lambda s: s["up"]), 90, "the station up on every node")
        clients = [NtripClient(lb.ports["ntrip"], mount, f"fleet-{stamp}", token, keep_frames=False)
                   for _ in range(args.vehicles)]
        for c in clients:
            c.start()
        st = wait_for(lambda: _station(stations, auth, sid, lambda s: s["clients"] == len(clients)), 30,
                      "the vehicles in /v1/stations")
        time.sleep(3)
        say(f"    /v1/stations: source on {st['source_node']}, vehicles per node {json.dumps(st['clients_by_node'])}")
        say(f"    frames received per vehicle in 3 s: {[c.received for c in clients]}")

        held = st["clients_by_node"].get(n3.node_id, 0)
        before = sum(c.connects for c in clients)
        say(f"3/3 SIGKILL node 3 ({held} vehicles on it)")
        n3.kill()
        t0 = time.monotonic()
        wait_for(lambda: sum(c.connects for c in clients) >= before + held, 30, "the vehicles reconnecting")
        took = time.monotonic() - t0
        counts = [c.received for c in clients]
        time.sleep(3)
        resumed = sum(1 for c, n in zip(clients, counts) if c.received > n)
        # a node's status counts until it is NODE_STALE_S old: then the network view drops the dead node
        st = wait_for(lambda: _station(stations, auth, sid, lambda s: n3.node_id not in s["clients_by_node"]),
                      30, "the network view without node 3")
        say(f"    {held} vehicles back through HAProxy in {took:.1f} s; {resumed}/{len(clients)} receiving; "
            f"vehicles per node now {json.dumps(st['clients_by_node'])}")
        if args.keep:
            say("running; Ctrl-C stops everything")
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
    finally:
        for c in clients:
            c.stop()
        if replay is not None and replay.poll() is None:
            replay.terminate()
            replay.wait(10)
        say("stopping nodes, HAProxy, Redis and PostgreSQL")
        cluster.stop()


def _ok(url, auth):
    try:
        r = requests.get(url, headers=auth, timeout=10)
    except requests.RequestException:
        return None
    return r if r.status_code == 200 else None


def _station(url, auth, sid, cond):
    r = _ok(url, auth)
    if r is None:
        return None
    st = {s["id"]: s for s in r.json()["stations"]}.get(sid)
    return st if st is not None and cond(st) else None


if __name__ == "__main__":
    main()
