"""What the caster tells the world: the sourcetable, station status (JSON for the HTTP API, written
to a file other processes read) and Prometheus metrics."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cors import ntrip
from cors.errors import CorsError


def sourcetable(caster, query: str = "") -> str:
    """STR rows of every listed mountpoint (stations by name, then the other kinds), CAS, NET."""
    stations = sorted(caster.mounts.values(), key=lambda m: m.name)
    records = [r for mp in [*stations, *caster.virtual.values()] if (r := mp.str_record()) is not None]
    up = [m for m in stations if m.up]
    if up:
        lat = float(np.mean([m.station.approx_latlon()[0] for m in up]))
        lon = float(np.mean([m.station.approx_latlon()[1] for m in up]))
    else:
        lat = lon = 0.0
    info = caster.info
    frame = f"frame={caster.service_frame.spec}"  # the frame of every 1005/1006 served here
    records.append(ntrip.cas_record(info.host, caster.port, info.identifier, info.operator, 1, info.country,
                                    lat, lon, misc=frame))
    records.append(ntrip.net_record(info.network, info.operator, "B", "N", info.web, info.web, info.web,
                                    misc=frame))
    records = ntrip.filter_sourcetable(records, query)
    return "".join(r + "\r\n" for r in records) + "ENDSOURCETABLE\r\n"


def mount_status(caster, m) -> dict:
    d = m.station.public()
    d.update(caster.monitor.station_status(m.sid))
    d["clients"] = len(m.clients)
    # on this node (with a bus, the other nodes get the data without a source of their own)
    d["source_connected"] = m.source is not None or m.pulling
    d["sent_bytes"] = m.sent_bytes
    d["fanout_last_ms"] = round(m.fanout_last_s * 1e3, 3)
    d["fanout_max_ms"] = round(m.fanout_max_s * 1e3, 3)
    return d


def station_status(caster, station_id: str) -> dict:
    for m in caster.mounts.values():
        if m.sid == station_id:
            return mount_status(caster, m)
    raise CorsError(f"no station {station_id!r} in the caster")


def status(caster) -> list[dict]:
    """JSON-able status of every station (what ``GET /v1/stations`` returns)."""
    return [mount_status(caster, m) for m in sorted(caster.mounts.values(), key=lambda m: m.sid)]


def write_status(caster, path) -> None:
    """Atomically write ``status()`` (JSON) and the Prometheus text beside it (``.prom``)."""
    from lanelets.files import write_atomic

    path = Path(path)
    doc = {"generated": time.time(), "caster": {"host": caster.info.host, "port": caster.port,
                                                "clients": caster.client_count(), "node": caster.node_id},
           "service_frame": caster.service_frame.spec,
           "stations": status(caster)}
    for mp in caster.virtual.values():
        doc.update(mp.status_sections())
    if caster.bus is not None:
        caster.bus.put_status(doc)
    # rewritten every 2 s: atomic for readers, no fsync needed
    write_atomic(path, json.dumps(doc), 0o644, fsync=False)
    write_atomic(path.with_suffix(".prom"), caster.metrics_text(), 0o644, fsync=False)


def read_status(path) -> dict:
    """The caster's last status document (for the HTTP API in another process); {} if none yet.

    ``{"generated": unix time, "caster": {...}, "stations": [station status, ...]}``; a station's
    ``up`` is only as fresh as ``generated`` (written every 2 s by a running caster).
    """
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def collector(caster):
    """A prometheus_client collector function for the caster's own counters (added to the monitor's)."""
    def collect():
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        clients = GaugeMetricFamily("ntrip_clients", "Connected NTRIP clients", labels=["mountpoint"])
        sent = CounterMetricFamily("ntrip_sent_bytes", "Bytes sent to clients", labels=["mountpoint"])
        for m in caster.mounts.values():
            clients.add_metric([m.name], len(m.clients))
            sent.add_metric([m.name], m.sent_bytes)
        for mp in caster.virtual.values():
            clients.add_metric([mp.name], mp.client_count())
        dropped = CounterMetricFamily("ntrip_clients_dropped", "Clients dropped", labels=["reason"])
        for reason, n in caster.dropped.items():
            dropped.add_metric([reason], n)
        reqs = CounterMetricFamily("ntrip_requests", "Answered requests by status", labels=["status"])
        for code, n in caster.requests.items():
            reqs.add_metric([str(code)], n)
        switches = CounterMetricFamily("ntrip_nearest_switches", "NEAREST base changes")
        switches.add_metric([], caster.switches)
        return [clients, sent, dropped, reqs, switches]
    return collect
