"""`make demo`'s vehicle step on the bundled pilot-zone map (no ../shared needed): a lanelet2 route, ITRF2014
positions at today's epoch, fetched over HTTP and located; the frame chain is what makes it right."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


@pytest.mark.slow
def test_vehicle_demo_locates_the_route(mapsvc_home, capsys):
    from mapsvc.demo import run_map_demo
    from mapsvc.demo_locate import rtk_scatter, run_locate_demo

    release = run_map_demo()["release"]
    # a straight drive at 10 m/s with 1 cm noise: the scatter is the noise, not the motion
    rng = np.random.default_rng(1)
    base = np.array([-2148744.0, 4426641.0, 4044655.0])
    statuses = [SimpleNamespace(stat=1, ecef=tuple(base + [10.0 * i, 0, 0] + rng.normal(0, 0.01, 3)))
                for i in range(60)]
    scatter = rtk_scatter(statuses)
    assert 0.003 < np.sqrt((scatter ** 2).mean()) < 0.02
    out = run_locate_demo(release, statuses)
    printed = capsys.readouterr().out
    assert out["positions"] > 1000 and out["route_lanelets"] >= 10
    assert out["right"] >= 0.995 and out["right"] > out["right_without_frame_chain"]
    assert "located sequence:" in printed and "saw only the offset position" in printed
