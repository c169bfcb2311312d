"""Ingest monitoring against the reference decode of the real captures (their *_inventory.csv)."""
from __future__ import annotations

import csv
import random
from collections import Counter

import pytest
from pyrtcm import rtcmhelpers

from cors.monitor import Monitor, RtcmFramer
from cors.ntrip import crc24q, frame_ok
from tests.gnss.ntrip_helpers import GMSD7, RTCM_DIR, TESTGLO, need


def inventory(name: str) -> list[dict]:
    with open(need(RTCM_DIR / f"{name}_inventory.csv")) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("capture", [GMSD7, TESTGLO], ids=lambda p: p.stem)
def test_monitor_matches_the_reference_inventory(capture):
    data = need(capture).read_bytes()
    rows = inventory(capture.stem)
    rnd = random.Random(3)
    framer, mon = RtcmFramer(), Monitor()
    pos, t = 0, 0.0
    while pos < len(data):  # arbitrary TCP-like chunking
        step = rnd.randint(1, 1500)
        for f in framer.feed(data[pos:pos + step]):
            mon.observe("S", f, now=t)
            t += 0.01
        pos += step
    st = mon.station_status("S", now=t)
    assert {k: v["count"] for k, v in st["message_types"].items()} == dict(Counter(r["msg_type"] for r in rows))
    assert st["frames"] == len(rows) and st["bad_frames"] == 0
    assert st["bytes"] == sum(int(r["frame_len"]) for r in rows)
    last_epoch, staid = {}, None
    for r in rows:
        nsat = r.get("nsat") or r.get("nsat_legacy_gps") or r.get("nsat_legacy_glo")
        if nsat:
            last_epoch[r["msg_type"]] = int(nsat)
            staid = int(r["staid"])
    sys_of = {"1077": "GPS", "1087": "GLO", "1117": "QZS", "1127": "BDS", "1004": "GPS", "1012": "GLO"}
    assert st["satellites"] == {sys_of[t]: n for t, n in last_epoch.items()}
    assert st["rtcm_station_id"] == staid
    # epochs = observation messages closing an epoch (MSM multiple-message bit / legacy sync flag 0)
    assert st["epochs"] == sum(1 for r in rows if (r.get("mmb") or r.get("sync_flag")) == "0")


def test_crc_table_agrees_with_pyrtcm_and_bad_frames_are_counted():
    frames = RtcmFramer().feed(need(GMSD7).read_bytes())
    for f in frames[:50]:
        assert crc24q(f[:-3]) == rtcmhelpers.calc_crc24q(f[:-3]) and frame_ok(f)
    mon = Monitor()
    broken = bytearray(frames[0])
    broken[40] ^= 0x10
    assert not frame_ok(bytes(broken))
    assert mon.observe("S", bytes(broken), now=0.0) is None
    assert mon.observe("S", frames[1], now=0.1) is not None
    st = mon.station_status("S", now=0.2)
    assert st["bad_frames"] == 1 and st["frames"] == 1


def test_framer_skips_junk_between_frames():
    frames = RtcmFramer().feed(need(GMSD7).read_bytes())[:10]
    framer = RtcmFramer()
    out = framer.feed(b"garbage\r\n" + frames[0] + b"\x00\x01" + b"".join(frames[1:]))
    assert out == frames and framer.junk_bytes == 11


def test_rates_gaps_and_down_after_silence():
    frames = RtcmFramer().feed(need(GMSD7).read_bytes())
    mon = Monitor(down_after=5.0)
    t, epoch = 0.0, 0
    for f in frames:
        mtype = (f[3] << 4) | (f[4] >> 4)
        mon.observe("S", f, now=t)
        last = t
        if mtype == 1127:  # last MSM of each epoch: next epoch one second later, but skip 3 epochs once
            epoch += 1
            t = epoch + (3.0 if epoch >= 100 else 0.0)
    st = mon.station_status("S", now=t)
    assert st["gaps"] == 1 and st["missing_epochs"] == 3 and st["longest_gap_s"] == pytest.approx(4.0)
    assert st["message_types"]["1077"]["rate_hz"] == pytest.approx(1.0, rel=0.03)
    assert st["message_types"]["1033"]["interval_s"] == pytest.approx(9.5, abs=1.0)
    assert mon.is_up("S", now=last + 4.9)
    assert mon.check(now=last + 4.9) == []
    assert mon.check(now=last + 5.1) == [("S", False)]
    assert mon.station_status("S", now=last + 5.1)["up"] is False
    text = mon.metrics_text().decode()
    assert 'cors_frames_total{station="S",type="1077"} 257.0' in text
    assert 'cors_satellites{constellation="GPS",station="S"} 12.0' in text or \
        'cors_satellites{station="S",constellation="GPS"} 12.0' in text
    assert 'cors_epoch_gaps_total{station="S"} 1.0' in text


def test_framer_recovers_after_false_preamble_and_corrupted_frame():
    frames = RtcmFramer().feed(need(GMSD7).read_bytes())[:12]
    corrupted = bytearray(frames[5])
    corrupted[100] ^= 0xFF
    stream = b"\xd3\x00\x10" + b"".join(frames[:5]) + bytes(corrupted) + b"".join(frames[6:])
    framer = RtcmFramer()
    out = []
    for i in range(0, len(stream), 97):
        out += framer.feed(stream[i:i + 97])
    # the false preamble in front swallows nothing; the corrupted frame is one bad frame
    assert out == frames[:5] + frames[6:]
    assert framer.bad_frames == 2 and framer.pending() == 0
