"""RINEX -> RTCM 3 (RTKLIB's encoder) and the paced replay: checked with pyrtcm and RTKLIB's decoder."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time

import pyrtklib as rtk
import pytest
from pyrtcm import RTCMReader
from pyrtcm.rtcmtypes_core import VALCKSUM

from cors.errors import CorsError
from cors.replay import ReplayConfig, iter_rtcm_frames, parse_target, replay
from cors.rtcm_encode import encode_rinex, gtime_seconds, read_rinex, satsys
from tests.gnss.rtk_helpers import GEONET_3034, GEONET_3040

MSM_SYS = {1: "GPS", 4: "GLO", 8: "GAL", 16: "QZS", 32: "BDS"}


def _encode(ds, **kw):
    return list(encode_rinex(ds.path(ds.base), [ds.path(ds.nav)], **kw))


def _parse_all(raw: bytes):
    """Independent decode of a byte stream by pyrtcm (CRC checked)."""
    return [msg for _raw, msg in RTCMReader(io.BytesIO(raw), validate=VALCKSUM, quitonerror=2)]


@pytest.fixture(scope="module")
def epochs_3034():
    ds = GEONET_3034
    return _encode(ds, station_id=3034, ecef=ds.base_ecef)


def test_schedule_and_frames_of_a_cors_mountpoint(epochs_3034):
    src = read_rinex(GEONET_3034.path(GEONET_3034.base))
    assert len(epochs_3034) == len(src.epochs)
    stream = b"".join(e.raw for e in epochs_3034)
    parsed = _parse_all(stream)
    assert [str(m.identity) for m in parsed] == [str(f.msg_type) for e in epochs_3034 for f in e.frames]
    # station frames every 10 s, ephemerides every 60 s (of GNSS time), from the first epoch on
    t_station = [e.gpst for e in epochs_3034 if any(f.msg_type == 1006 for f in e.frames)]
    t_eph = [e.gpst for e in epochs_3034 if any(f.msg_type in (1019, 1044, 1045, 1046) for f in e.frames)]
    assert t_station[0] == epochs_3034[0].gpst and t_eph[0] == epochs_3034[0].gpst
    assert {round(b - a, 3) for a, b in zip(t_station, t_station[1:])} == {10.0}
    assert {round(b - a, 3) for a, b in zip(t_eph, t_eph[1:])} == {60.0}
    assert all(any(f.msg_type == 1033 for f in e.frames) for e in epochs_3034 if e.gpst in t_station)
    # one MSM7 per constellation present in the epoch, multiple-message bit on all but the last
    for e, (start, end) in zip(epochs_3034, src.epochs):
        present = {MSM_SYS[satsys(src.obs.data[k].sat)[0]] for k in range(start, end)}
        msm = [f for f in e.frames if 1071 <= f.msg_type <= 1137]
        assert {f.msg_type for f in msm} == {{"GPS": 1077, "GAL": 1097, "QZS": 1117}[s] for s in present}
        mmb = [RTCMReader.parse(f.raw).DF393 for f in msm]
        assert mmb == [1] * (len(msm) - 1) + [0]
    arp = next(m for m in parsed if str(m.identity) == "1006")
    assert arp.DF003 == 3034
    got = (arp.DF025, arp.DF026, arp.DF027)
    assert max(abs(a - b) for a, b in zip(got, GEONET_3034.base_ecef)) < 1.5e-4
    assert arp.DF028 == 0  # antenna height from the RINEX header (0)
    assert not any(f.msg_type == 1230 for e in epochs_3034 for f in e.frames)  # no GLONASS here


def test_observations_survive_the_round_trip(epochs_3034):
    """RTKLIB's decoder gives back the RINEX epochs: same times, P within 1 mm, L within 0.002 cycle
    up to a whole-cycle offset that only changes where the decoded stream flags a slip (LLI)."""
    src = read_rinex(GEONET_3034.path(GEONET_3034.base))
    dec = rtk.rtcm_t()
    rtk.init_rtcm(dec)
    dec.time = src.obs.data[0].time
    decoded = []
    for byte in b"".join(e.raw for e in epochs_3034):
        if rtk.input_rtcm3(dec, byte) == 1:
            decoded.append({(dec.obs.data[k].sat): (gtime_seconds(dec.obs.data[k].time),
                                                     list(dec.obs.data[k].P), list(dec.obs.data[k].L),
                                                     list(dec.obs.data[k].code),
                                                     list(dec.obs.data[k].LLI))
                            for k in range(dec.obs.n)})
    rtk.free_rtcm(dec)
    assert len(decoded) == len(src.epochs)
    worst_p = worst_l = 0.0
    offsets: dict[tuple[int, int], int] = {}
    unflagged_jumps = []
    for got, (start, end) in zip(decoded, src.epochs):
        assert len(got) == end - start
        for k in range(start, end):
            rec = src.obs.data[k]
            t, p, l, code, lli = got[rec.sat]
            assert t == gtime_seconds(rec.time)
            assert code == list(rec.code)
            for f in range(3):
                if rec.P[f]:
                    worst_p = max(worst_p, abs(p[f] - rec.P[f]))
                if rec.L[f]:
                    cycles = round(l[f] - rec.L[f])
                    if offsets.get((rec.sat, f), cycles) != cycles and not lli[f] & 1:
                        unflagged_jumps.append((rec.sat, f, t))
                    offsets[(rec.sat, f)] = cycles
                    worst_l = max(worst_l, abs(l[f] - rec.L[f] - cycles))
    assert worst_p <= 1e-3 and worst_l <= 2e-3, (worst_p, worst_l)
    assert not unflagged_jumps


def test_msm4_and_rinex2_station():
    ds = GEONET_3040
    epochs = _encode(ds, station_id=3040, msm=4)
    types = {f.msg_type for e in epochs for f in e.frames}
    assert types == {1006, 1033, 1074, 1019}  # GPS-only RINEX 2.10 file
    src = read_rinex(ds.path(ds.base))
    arp = next(m for m in _parse_all(epochs[0].raw) if str(m.identity) == "1006")
    assert max(abs(a - b) for a, b in zip((arp.DF025, arp.DF026, arp.DF027), src.header_ecef)) < 1.5e-4
    # the receiver's clock-steered time tags (.996 s ...) stay as they are
    assert [e.gpst for e in epochs] == [gtime_seconds(src.obs.data[s].time) for s, _ in src.epochs]


def test_bad_inputs(tmp_path):
    with pytest.raises(CorsError, match="no such RINEX"):
        read_rinex(tmp_path / "none.21O")
    junk = tmp_path / "junk.21O"
    junk.write_text("not a rinex file\n")
    with pytest.raises(CorsError, match="not a RINEX"):
        read_rinex(junk)
    with pytest.raises(CorsError, match="--msm"):
        list(encode_rinex(GEONET_3040.path(GEONET_3040.base), msm=5))
    for bad in ("http://h:1/M", "ntrip://h:2101/", "ntrip:///M", "tcp://h", "file:"):
        with pytest.raises(CorsError):
            parse_target(bad)
    t = parse_target("ntrip://3034:pa%3Ass@127.0.0.1:2101/GEONET3034")
    assert (t.user, t.password, t.host, t.port, t.mountpoint) == ("3034", "pa:ss", "127.0.0.1", 2101, "GEONET3034")


def test_paced_frames_keep_gnss_time_and_loop():
    ds = GEONET_3040  # 30 s epochs: x3000 -> 10 ms per epoch

    async def take(n, speed, loop):
        frames, t0 = [], time.monotonic()
        ecef = read_rinex(ds.path(ds.base)).header_ecef
        agen = iter_rtcm_frames(ds.path(ds.base), ds.path(ds.nav), ecef, speed=speed, loop=loop,
                                station_id=3040)
        async for f in agen:
            frames.append(f)
            if sum(1 for x in frames if ((x[3] << 4) | (x[4] >> 4)) == 1077) >= n:
                break
        await agen.aclose()
        return frames, time.monotonic() - t0

    frames, elapsed = asyncio.run(take(31, 3000.0, False))
    # 30 epoch steps of ~30 s GNSS time at x3000 take ~0.3 s of wall time
    assert 0.28 <= elapsed < 5.0, elapsed
    n_epochs = len(read_rinex(ds.path(ds.base)).epochs)
    frames, _ = asyncio.run(take(n_epochs + 5, 1e5, True))
    tows = [RTCMReader.parse(f).DF004 for f in frames if ((f[3] << 4) | (f[4] >> 4)) == 1077]
    assert tows[n_epochs:] == tows[:5]  # the file starts again with its own epoch times
    assert all(b > a for a, b in zip(tows[:n_epochs], tows[1:n_epochs]))


def test_reconnect_back_off_is_at_least_10_s(tmp_path):
    """Nothing listens at first: the next attempt comes >= 10 s later (RTK2go-style etiquette)."""
    ds = GEONET_3040
    attempts: list[float] = []

    async def main():
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()  # the port is now free and refuses connections
        received = bytearray()
        done = asyncio.Event()

        async def handle(reader, writer):
            attempts.append(time.monotonic())
            while data := await reader.read(65536):
                received.extend(data)
            done.set()

        async def late_server():
            await asyncio.sleep(1.0)
            return await asyncio.start_server(handle, "127.0.0.1", port)

        server_task = asyncio.create_task(late_server())
        t0 = time.monotonic()
        cfg = ReplayConfig(ds.path(ds.base), ds.path(ds.nav), read_rinex(ds.path(ds.base)).header_ecef,
                           speed=1e4, station_id=3040)
        stats = await replay(cfg, f"tcp://127.0.0.1:{port}", log=lambda m: None, max_epochs=20)
        server = await server_task
        await asyncio.wait_for(done.wait(), 5)
        server.close()
        return t0, stats, bytes(received)

    t0, stats, received = asyncio.run(main())
    assert len(attempts) == 1 and attempts[0] - t0 >= 10.0
    assert stats.connects == 1 and stats.epochs == 20
    assert {str(m.identity) for m in _parse_all(received)} >= {"1006", "1077"}


def test_cli_replay_to_file_uses_registered_arp(tmp_path):
    """`mapsvc stations add` + `mapsvc replay --to file:` : the ARP comes from the registry."""
    ds = GEONET_3034
    env = dict(os.environ, MAPSVC_HOME=str(tmp_path / "home"))
    mapsvc = [os.path.join(os.path.dirname(sys.executable), "mapsvc")]
    ecef = ",".join(str(v) for v in ds.base_ecef)
    subprocess.run(mapsvc + ["stations", "add", "3034", "--mountpoint", "GEONET3034", "--ecef", ecef,
                             "--password", "pw"], check=True, env=env, capture_output=True, timeout=60)
    out = tmp_path / "out.rtcm3"
    run = subprocess.run(mapsvc + ["replay", str(ds.path(ds.base)), "--nav", str(ds.path(ds.nav)),
                                   "--to", f"file:{out}", "--station", "3034", "--speed", "1000",
                                   "--epochs", "25"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr
    msgs = _parse_all(out.read_bytes())
    arp = [m for m in msgs if str(m.identity) == "1006"]
    assert len(arp) == 4  # t = 0, 10, 20 s + the announce on connect
    assert abs(arp[0].DF025 - ds.base_ecef[0]) < 1.5e-4 and arp[0].DF003 == 3034
    assert sum(1 for m in msgs if str(m.identity) == "1077") == 25
    bad = subprocess.run(mapsvc + ["replay", str(tmp_path / "missing.21O"), "--to", f"file:{out}"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("mapsvc: error:") and "missing.21O" in bad.stderr
