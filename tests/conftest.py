"""Shared fixtures: the real data in ../shared/data (read in place, never copied into the repo)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property-based fuzzers: a bounded run in every `make test`, a long one in `make fuzz` (HYPOTHESIS_PROFILE=fuzz).
# Tests that set their own max_examples keep it. No deadline: CI shares 2 cores, timing is not the property.
settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile("fuzz", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]


SHARED_DATA = REPO.parent / "shared" / "data"
LANELET2_DIR = SHARED_DATA / "lanelet2"
GNSS_DIR = SHARED_DATA / "gnss"


def shared_lanelet2_maps() -> list[Path]:
    return sorted(LANELET2_DIR.glob("*.osm")) if LANELET2_DIR.is_dir() else []


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"../shared/data is absent here ({path.name} missing): real-data test skipped")
    return path


@pytest.fixture(params=shared_lanelet2_maps() or [None], ids=lambda p: p.name if p else "no-shared-data")
def real_map(request) -> Path:
    if request.param is None:
        pytest.skip("../shared/data/lanelet2 is absent: real-map tests skipped")
    return request.param


@pytest.fixture
def mapsvc_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MAPSVC_HOME", str(home))
    return home


def origin_of(path: Path) -> tuple[float, float]:
    """Origins from the shared maps' README (any origin near the map works for Lanelet2)."""
    from lanelets.model import default_origin
    from lanelets.osm import read_osm

    return default_origin(read_osm(path))


def mapsvc_cmd() -> list[str]:
    exe = Path(os.sys.executable).with_name("mapsvc")
    return [str(exe)] if exe.exists() else [os.sys.executable, "-m", "mapsvc"]


from servers import haproxy_factory, postgres_server, postgres_url, redis_server, state_where  # noqa: E402,F401  (fixtures)
