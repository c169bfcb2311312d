"""Helpers for the replay/rover/RTK tests: the shared GNSS data and RTKLIB's own tools as oracle."""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GNSS = REPO.parent / "shared" / "data" / "gnss"


@dataclass(frozen=True)
class DataSet:
    name: str
    folder: str
    base: str
    rover: str
    nav: str
    base_ecef: tuple | None  # None: rinexhead in the conf (base = RINEX header / RTCM 1006)
    approx_time: str  # for convbin -tr (RTCM MSM carries time of week only)
    station_id: str
    mountpoint: str

    @property
    def dir(self) -> Path:
        return GNSS / self.folder

    def path(self, name: str) -> Path:
        p = self.dir / name
        if not p.exists():
            pytest.skip(f"../shared/data/gnss/{self.folder}/{name} absent: real-data test skipped")
        return p

    @property
    def conf(self) -> Path:
        return self.path("rnx2rtkp.conf")

    @property
    def reference(self) -> Path:
        return self.path("reference_rnx2rtkp.pos")


GEONET_3034 = DataSet("3034-car", "geonet3034_sept_2021265", "3034265G.21O", "SEPT265G.21O",
                      "SEPT2650.21P", (-3959400.631, 3385704.533, 3667523.111),
                      "2021/09/22 06:30:00", "3034", "GEONET3034")
GEONET_3040 = DataSet("3040-0759", "geonet_0759_3040_2005092", "30400920.05o", "07590920.05o",
                      "07590920.05n", None, "2005/04/02 00:00:00", "3040", "GEONET3040")
DATA_SETS = [GEONET_3034, GEONET_3040]


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"Debian rtklib's {name} is not installed")
    return path


def read_pos(path: Path) -> dict[tuple[str, str], tuple[float, float, float, int]]:
    """RTKLIB .pos (xyz, week/tow): {(week, tow): (x, y, z, Q)}."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("%"):
            continue
        w = line.split()
        out[(w[0], w[1])] = (float(w[2]), float(w[3]), float(w[4]), int(w[5]))
    return out


def fix_rate(sol: dict) -> float:
    return sum(1 for v in sol.values() if v[3] == 1) / max(len(sol), 1)


def fixed_differences(a: dict, b: dict) -> list[float]:
    """3-D distance at epochs fixed in both solutions."""
    return [math.dist(a[k][:3], b[k][:3]) for k in a if k in b and a[k][3] == 1 and b[k][3] == 1]


def rnx2rtkp(conf: Path, rover: Path, base: Path, nav: Path, out: Path, *,
             forward: bool = False) -> dict:
    """Debian RTKLIB rnx2rtkp with ``conf`` (forward-only if asked: a copy with soltype=forward)."""
    need_tool("rnx2rtkp")
    if forward:
        fconf = out.with_suffix(".forward.conf")
        fconf.write_text(Path(conf).read_text() + "\npos1-soltype       =forward\n")
        conf = fconf
    subprocess.run(["rnx2rtkp", "-k", str(conf), "-o", str(out), str(rover), str(base), str(nav)],
                   check=True, capture_output=True, timeout=120)
    return read_pos(out)


def convbin(rtcm: Path, approx_time: str, out_obs: Path) -> Path:
    """RTCM 3 -> RINEX 3.04 observations with Debian RTKLIB convbin."""
    need_tool("convbin")
    date, clock = approx_time.split()
    subprocess.run(["convbin", "-r", "rtcm3", "-tr", date, clock, "-v", "3.04", "-o", str(out_obs),
                    "-n", str(out_obs.with_suffix(".nav")), str(rtcm)],
                   check=True, capture_output=True, timeout=120)
    if not out_obs.exists() or out_obs.stat().st_size == 0:
        raise AssertionError(f"convbin wrote no observations from {rtcm}")
    return out_obs
