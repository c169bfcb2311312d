"""The RINEX archive: an hour of a real base (GEONET 3034) replayed as RTCM onto a real Redis bus, archived by
the consumer, equals RTKLIB's own `convbin` of the same RTCM, epoch by epoch; restarts lose and repeat nothing."""
import datetime as dt
import gzip
import shutil
import subprocess
import time

import pytest

from conftest import GNSS_DIR, require_shared
from cors.archive import Archive, Archiver, long_name, station_code
from cors.bus import RedisBus

# a full day of a real CATNET base (30 s); its first hour is the hour archived
BASE = GNSS_DIR / "network_catnet_2010077" / "CREU0770.10o"
NAV = GNSS_DIR / "network_catnet_2010077" / "brdc0770.10n"
HOUR = dt.datetime(2010, 3, 18, 0, 0)  # the GPS-time hour of the archived epochs
GPS_MINUS_UTC_2010 = 15  # leap seconds then: a live station's epochs reached us on the UTC clock


def _epochs(body: str) -> dict[str, list[str]]:
    """Observation records by epoch line (everything after the header)."""
    out, cur = {}, None
    for line in body.split("END OF HEADER", 1)[1].splitlines()[1:]:
        if line.startswith(">"):
            cur = out.setdefault(line.rstrip(), [])
        elif cur is not None:
            cur.append(line.rstrip())
    return out


def _encoded(start_s: float, end_s: float) -> list:
    """The real base's epochs from start_s to end_s (seconds after its first), encoded to RTCM 3 MSM7 by RTKLIB."""
    from cors.rtcm_encode import encode_rinex

    require_shared(BASE)
    out, first = [], None
    for ep in encode_rinex(BASE, [NAV], station_id=770):
        first = ep.gpst if first is None else first
        if ep.gpst - first >= end_s:
            break
        if ep.gpst - first >= start_s:
            out.append(ep)
    return out


@pytest.fixture(scope="module")
def hour_of_rtcm():
    """The first hour of the real base, per epoch."""
    return [ep.raw for ep in _encoded(0, 3600)]


@pytest.mark.slow
def test_archived_hour_equals_convbin(tmp_path, redis_server, hour_of_rtcm):
    if shutil.which("convbin") is None:
        pytest.skip("Debian rtklib (convbin) is not installed: the reference converter is needed")
    bus = RedisBus(redis_server.url, "ingest")
    t0 = HOUR.replace(tzinfo=dt.timezone.utc).timestamp()
    half = len(hour_of_rtcm) // 2
    for i, data in enumerate(hour_of_rtcm[:half]):
        bus.publish_now("CREU", data, t0 + 30 * i)
    arch = Archiver(redis_server.url, tmp_path / "archive", {"CREU": "CREU"}, name="a1")
    while arch.step(block_ms=None, now=t0):
        pass
    del arch  # the archiver stops half-way (restart): the rest arrives meanwhile
    for i, data in enumerate(hour_of_rtcm[half:], start=half):
        bus.publish_now("CREU", data, t0 + 30 * i)
    arch = Archiver(redis_server.url, tmp_path / "archive", {"CREU": "CREU"}, name="a1")
    while arch.step(block_ms=None, now=t0):
        pass
    files = arch.close_hours(now=t0 + 3600 + arch.grace_s)
    code = station_code("CREU")
    assert [p.name for p in files] == [long_name(code, HOUR, "obs", 30.0), long_name(code, HOUR, "nav")]
    assert files[0].name == "CREU00XXX_S_20100770000_01H_30S_MO.crx.gz"
    raw = tmp_path / "archive" / "CREU" / "2010" / "077" / "00.rtcm3"
    assert raw.read_bytes() == b"".join(hour_of_rtcm)  # nothing lost or repeated across the restart

    import hatanaka

    ours = hatanaka.decompress(files[0].read_bytes()).decode()
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "in.rtcm3").write_bytes(b"".join(hour_of_rtcm))
    subprocess.run(["convbin", "-r", "rtcm3", "-v", "3.04", "-tr", HOUR.strftime("%Y/%m/%d"),
                    HOUR.strftime("%H:%M:%S"), "-o", str(ref / "ref.obs"), "-n", str(ref / "ref.nav"), str(ref / "in.rtcm3")],
                   check=True, capture_output=True, timeout=300)
    want = _epochs((ref / "ref.obs").read_text())
    got = _epochs(ours)
    assert len(want) == 120 and list(got) == list(want)
    for epoch, records in want.items():
        assert got[epoch] == records, epoch
    head = lambda t: [l.rstrip() for l in t.split("END OF HEADER")[0].splitlines() if "OBS TYPES" in l]
    assert head(ours) == head((ref / "ref.obs").read_text())
    nav_body = lambda t: t.split("END OF HEADER", 1)[1]
    assert nav_body(gzip.decompress(files[1].read_bytes()).decode()) == nav_body((ref / "ref.nav").read_text())


def test_hours_are_the_gps_time_of_the_epochs_not_of_their_arrival(tmp_path, redis_server):
    """Epochs around an hour boundary, received 45 s late on the UTC clock: each goes in the file of its own
    GPS-time hour (checked by pyrtcm's decoding of the archived frames, not by our header reader)."""
    import io

    from pyrtcm import RTCMReader

    epochs = _encoded(3300, 3900)  # 00:55 to 01:05 GPS time
    bus = RedisBus(redis_server.url, "ingest")
    for ep in epochs:
        bus.publish_now("CREU", ep.raw, ep.gpst - GPS_MINUS_UTC_2010 + 45.0)
    arch = Archiver(redis_server.url, tmp_path / "archive", {"CREU": "CREU"}, name="b1")
    while arch.step(block_ms=None, now=epochs[0].gpst):
        pass
    day = tmp_path / "archive" / "CREU" / "2010" / "077"
    seen = 0
    for hour in (0, 1):
        msgs = [m for _raw, m in RTCMReader(io.BytesIO((day / f"{hour:02d}.rtcm3").read_bytes()))]
        tows = [m.DF004 for m in msgs if m.identity.startswith("107")]  # GPS MSM
        assert tows and {int(t / 1000 % 86400 // 3600) for t in tows} == {hour}
        seen += len(set(tows))
    assert seen == len(epochs) == 20
    assert not (day / "02.rtcm3").exists()


def test_archive_names_and_lookup(tmp_path):
    a = Archive(tmp_path)
    d = a.hour_dir("3034", HOUR)
    d.mkdir(parents=True)
    name = long_name(station_code("3034"), HOUR, "obs", 30.0)
    assert name == "303400XXX_S_20100770000_01H_30S_MO.crx.gz"
    (d / name).write_bytes(b"x")
    assert a.listing("3034") == [{"name": name, "bytes": 1}] and a.path("3034", name) == d / name
    from cors.errors import CorsError

    for bad in ("../x", "07.rtcm3", name.replace("30S", "3S")):
        with pytest.raises(CorsError):
            a.path("3034", bad)


def test_rinex_served_to_surveyors_only(tmp_path, hour_of_rtcm):
    """The archived hour over HTTP: listed and downloaded by a surveyor, refused to a vehicle, in OpenAPI."""
    from mapsvc.api import create_app
    from tokens import TokenStore

    home = tmp_path / "home"
    arch = Archive(home / "rinex")
    for i, data in enumerate(hour_of_rtcm):
        arch.append("CREU", HOUR, data, f"{i + 1}-0")
    files = arch.finish("CREU", HOUR, "ESP")
    assert [p.name for p in files] == ["CREU00ESP_S_20100770000_01H_30S_MO.crx.gz",
                                       "CREU00ESP_S_20100770000_01H_MN.rnx.gz"]
    tokens = TokenStore(home / "tokens.sqlite")
    surveyor, vehicle = tokens.create("surveyor", "s1"), tokens.create("vehicle", "v1")
    tokens.close()
    client = create_app({"HOME": str(home), "ACCESS_LOG": False}).test_client()
    auth = lambda t: {"Authorization": f"Bearer {t}"}
    listing = client.get("/v1/stations/CREU/rinex", headers=auth(surveyor))
    assert listing.status_code == 200
    assert [f["name"] for f in listing.get_json()["files"]] == [p.name for p in files]
    got = client.get(f"/v1/stations/CREU/rinex/{files[0].name}", headers=auth(surveyor))
    assert got.status_code == 200 and got.data == files[0].read_bytes()
    import hatanaka

    assert "END OF HEADER" in hatanaka.decompress(got.data).decode()
    assert client.get(f"/v1/stations/CREU/rinex/{files[0].name}", headers=auth(vehicle)).status_code == 403
    assert client.get("/v1/stations/CREU/rinex/00.rtcm3", headers=auth(surveyor)).status_code == 404
    assert client.get("/v1/stations/NOPE/rinex", headers=auth(surveyor)).get_json()["files"] == []
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    assert "/v1/stations/{station_id}/rinex/{name}" in paths and "/v1/stations/{station_id}/rinex" in paths
