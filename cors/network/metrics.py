"""Prometheus figures of a network (from ``NetworkEngine.status()``), for the monitor's extra collectors."""
from __future__ import annotations


def metric_families(status: dict, virtual_stations: int | None = None) -> list:
    from prometheus_client.core import GaugeMetricFamily

    fixed = GaugeMetricFamily("cors_network_baseline_fixed", "1 if the baseline's ambiguities are fixed now",
                              labels=["baseline"])
    rate = GaugeMetricFamily("cors_network_baseline_fix_ratio", "Share of epochs fixed since start",
                             labels=["baseline"])
    wl_fixed = GaugeMetricFamily("cors_network_baseline_widelane_fixed", "1 if the baseline's widelanes are "
                                 "fixed now", labels=["baseline"])
    wl_rate = GaugeMetricFamily("cors_network_baseline_widelane_fix_ratio", "Share of epochs with the "
                                "widelanes fixed since start", labels=["baseline"])
    length = GaugeMetricFamily("cors_network_baseline_km", "Baseline length", labels=["baseline"])
    for b in status.get("baselines", []):
        fixed.add_metric([b["name"]], 1.0 if b["fixed"] else 0.0)
        rate.add_metric([b["name"]], b["fix_rate"])
        wl_fixed.add_metric([b["name"]], 1.0 if b.get("wl_fixed") else 0.0)
        wl_rate.add_metric([b["name"]], b.get("wl_fix_rate", 0.0))
        length.add_metric([b["name"]], b["km"])
    closure = GaugeMetricFamily("cors_network_closure_meters", "Triangle closure of the ionosphere (rms over "
                                "satellites) on edges outside the spanning tree", labels=["baseline"])
    for name, cm in status.get("closures_cm", {}).items():
        closure.add_metric([name], cm / 100.0)
    loo = GaugeMetricFamily("cors_network_interpolation_residual_meters", "Leave-one-out residual of the "
                            "interpolated ionosphere at a station (rms over satellites)", labels=["station"])
    for name, cm in status.get("leave_one_out_cm", {}).items():
        loo.add_metric([name], cm / 100.0)
    excluded = GaugeMetricFamily("cors_network_station_excluded", "1 if the station is left out",
                                 labels=["station", "reason"])
    for st in status.get("stations", []):
        excluded.add_metric([st["name"], st.get("excluded") or st.get("stale") or ""],
                            1.0 if st.get("excluded") or st.get("stale") else 0.0)
    out = [fixed, rate, wl_fixed, wl_rate, length, closure, loo, excluded]
    if virtual_stations is not None:
        vs = GaugeMetricFamily("cors_network_virtual_stations", "Virtual stations (occupied cells) served")
        vs.add_metric([], virtual_stations)
        out.append(vs)
    return out
