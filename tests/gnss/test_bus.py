"""The station bus on a real redis-server: streams per mountpoint, live following, durable consumers that
resume after a restart, network status."""
import asyncio
import time

from tests.gnss.ntrip_helpers import GMSD7, frames_of, need

from cors.bus import RedisBus, StreamConsumer, network_status, open_bus, stream_of
from cors.monitor import RtcmFramer
from cors.stations import Station


def _real_frames(n):
    frames = frames_of(need(GMSD7))
    assert len(frames) >= n
    return frames[:n]


def test_follow_fans_out_other_nodes_entries_in_order(redis_server):
    frames = _real_frames(60)
    a, b = open_bus(redis_server.url, "a"), open_bus(redis_server.url, "b")
    got = []

    async def run():
        follower = asyncio.create_task(b.follow(lambda: ["M1", "M2"], got.append, block_ms=100))
        await asyncio.sleep(0.3)  # following from "$": entries before this are not replayed
        for i, f in enumerate(frames):
            a.publish("M1" if i % 2 == 0 else "M2", f, time.time())
            b.publish("M1", b"own", time.time())  # a node skips its own entries
            await asyncio.sleep(0)
        for _ in range(100):
            if len(got) == len(frames):
                break
            await asyncio.sleep(0.05)
        follower.cancel()

    asyncio.run(run())
    assert [e.data for e in got if e.mountpoint == "M1"] == frames[0::2]
    assert [e.data for e in got if e.mountpoint == "M2"] == frames[1::2]
    assert all(e.node == "a" and 0 <= time.time() - e.received < 30 for e in got)
    # the bytes on the bus are the station's frames, CRC intact
    assert RtcmFramer().feed(b"".join(e.data for e in got if e.mountpoint == "M1")) == frames[0::2]


def test_consumer_resumes_after_restart_without_loss(redis_server):
    frames = _real_frames(50)
    bus = RedisBus(redis_server.url, "ingest")
    for f in frames[:30]:
        bus.publish_now("BASE", f)
    c = StreamConsumer(redis_server.url, "archive", "arch-1")
    first = c.read(["BASE"], count=20)
    assert [e.data for e in first] == frames[:20]
    c.ack(first[:10])  # crash after handling 10 of the 20 it was given
    del c
    for f in frames[30:]:
        bus.publish_now("BASE", f)
    c = StreamConsumer(redis_server.url, "archive", "arch-1")
    seen = []
    while True:
        batch = c.read(["BASE"], count=7)
        if not batch:
            break
        seen += batch
        c.ack(batch)
    assert [e.data for e in seen] == frames[10:]  # nothing lost, nothing acknowledged handed out again
    # another group reads everything retained, independently
    other = StreamConsumer(redis_server.url, "monitor", "m")
    assert [e.data for e in other.read(["BASE"], count=1000)] == frames


def test_retention_trims_old_entries(redis_server):
    bus = RedisBus(redis_server.url, "n", retention_s=0.5)
    for _ in range(150):
        bus.publish_now("OLD", b"x")
    time.sleep(1.2)
    for _ in range(150):  # approximate trimming frees whole macro nodes (100 entries) once all are old
        bus.publish_now("OLD", b"y")
    kept = bus.sync.xrange(stream_of("OLD"))
    assert 150 <= len(kept) <= 200 and kept[-150][1][b"d"] == b"y"


def test_network_status_merges_nodes():
    now = time.time()
    st = lambda clients, up, src: {"id": "S1", "mountpoint": "M1", "clients": clients, "up": up,
                                   "source_connected": src}
    nodes = {"1": {"generated": now, "caster": {"clients": 3}, "stations": [st(3, True, True)]},
             "2": {"generated": now, "caster": {"clients": 5}, "stations": [st(5, True, False)]},
             "3": {"generated": now - 60, "caster": {"clients": 9}, "stations": [st(9, True, True)]}}
    doc = network_status(nodes, now)
    assert list(doc["nodes"]) == ["1", "2"]  # node 3 is silent: gone
    (s,) = doc["stations"]
    assert s["clients"] == 8 and s["clients_by_node"] == {"1": 3, "2": 5} and s["source_node"] == "1" and s["up"]


def test_one_node_pulls_an_upstream_and_another_takes_over(tmp_path, redis_server):
    """Two casters on the bus with a TCP-pull station: only one connects upstream, clients on both receive
    its frames; when that node stops, the other takes the lease and pulls."""
    from tests.gnss.ntrip_helpers import GMSD_ECEF, CasterThread, Feeder, epochs_of, get, read_head

    feeder = Feeder(epochs_of(need(GMSD7)), period=0.1)
    feeder.start()
    nodes = [CasterThread(tmp_path, bus=open_bus(redis_server.url, f"n{i}"), node_id=f"n{i}").start()
             for i in (1, 2)]
    try:
        token = nodes[0].tokens.create("vehicle", "car")
        nodes[0].registry.add(Station(id="GMSD", mountpoint="GMSD7", ecef=GMSD_ECEF,
                                      source=f"tcp://127.0.0.1:{feeder.port}"))
        for n in nodes:
            n.wait(lambda n=n: "GMSD7" in n.caster.mounts and n.caster.mounts["GMSD7"].up, 15, "station up")
        time.sleep(1.0)
        assert len(feeder.connections) == 1  # one puller for the whole cluster
        for n in nodes:
            s = get(n.port, "GMSD7", user="car", password=token)
            head, body = read_head(s)
            assert b"200 OK" in head
            s.settimeout(3)
            data = body + s.recv(65536)
            assert RtcmFramer().feed(data), "no frames on a node"
            s.close()
        leader = next(n for n in nodes if bus_holds(redis_server.url, n.caster.node_id))
        other = nodes[1] if leader is nodes[0] else nodes[0]
        # the status says which node holds the upstream
        assert leader.call(lambda: leader.caster.station_status("GMSD")["source_connected"])
        assert not other.call(lambda: other.caster.station_status("GMSD")["source_connected"])
        leader.stop()
        nodes.remove(leader)
        other.wait(lambda: len(feeder.connections) == 2, 20, "the other node pulling")
        other.wait(lambda: other.caster.mounts["GMSD7"].up, 15, "station still up")
        other.wait(lambda: other.caster.station_status("GMSD")["source_connected"], 10, "the new puller in status")
    finally:
        for n in nodes:
            n.stop()
        feeder.stop()


def bus_holds(url, node_id):
    import redis

    return redis.Redis.from_url(url).get("mapsvc:lease:pull:GMSD7") == node_id.encode()
