"""Is a RINEX observation or navigation file whole? Where is it cut off or broken?

RTKLIB's ``readrnx`` (what replay reads with) skips a record it cannot parse and says nothing,
and georinex/hatanaka don't report where a file breaks either; so this walks the fixed-column
record structure (RINEX 2.1x / 3.0x) only to find the first record that is not whole:
- only the last record is incomplete (a file still being written): a warning naming it;
- a record in the middle is broken: ``RinexBroken`` naming the file and line.
Other files (RINEX 4, CRINEX, unknown types) are left to RTKLIB.
"""
from __future__ import annotations

import re
from math import ceil
from pathlib import Path

from cors.errors import CorsError

_OBS_VALUE = re.compile(r" *-?\d*\.\d{3}")  # F14.3
_NAV_VALUE = re.compile(r" *-?\d?\.\d+[DEde][+-]\d+")  # D19.12
_SAT = re.compile(r"[GRECJSI][ \d]\d")
_NAV3_LINES = {"R": 4, "S": 4}  # others: 8
_NAV2_LINES = {"N": 8, "G": 4, "H": 4}


class RinexBroken(CorsError):
    """A RINEX file with a broken record before its end: refused, not silently thinned."""


class _Problem(Exception):
    def __init__(self, line: int, record: str, why: str):
        super().__init__(why)
        self.line, self.record, self.why = line, record, why


def check_rinex(path: str | Path) -> str | None:
    """None when ``path`` is whole; a warning when only its last record is cut off;
    raises ``RinexBroken`` when a record before the end is broken."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError:
        return None  # missing/unreadable: read_rinex says so
    lines = text.splitlines()
    head = next((i for i, ln in enumerate(lines) if ln[60:73] == "END OF HEADER"), None)
    if head is None or not lines[0][60:80].startswith("RINEX VERSION"):
        return None
    try:
        version, kind = float(lines[0][:9]), lines[0][20:21]
    except ValueError:
        return None
    walker = _WALKERS.get((int(version), kind))
    if walker is None:
        return None
    try:
        walker(lines, head + 1)
    except _Problem as p:
        rest = lines[p.line + 1:]
        where = f"line {p.line + 1}, {p.record}" if p.record else f"line {p.line + 1}"
        if not any(ln.strip() for ln in rest):
            return f"{path}: last record cut off ({where}: {p.why}); dropped"
        raise RinexBroken(f"{path}: broken at {where}: {p.why}") from None
    return None


def _line(lines: list[str], i: int, record: str) -> str:
    if i >= len(lines):
        raise _Problem(len(lines) - 1, record, "file ends inside the record")
    return lines[i]


def _fields(line: str, start: int, width: int, value: re.Pattern, i: int, record: str) -> None:
    body = line[start:].rstrip()
    for k in range(0, len(body), width):
        field = body[k:k + width]
        num = field[:14] if width == 16 else field
        if num.strip() and not value.fullmatch(num):
            raise _Problem(i, record, f"bad value {num.strip()!r} at column {start + k + 1}")
        if width == 16 and not re.fullmatch(r"[ \d]{0,2}", field[14:]):
            raise _Problem(i, record, f"bad LLI/strength flags at column {start + k + 15}")


def _obs3(lines: list[str], i: int) -> None:
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        record = f"epoch {line[2:29].strip()}" if line.startswith(">") else ""
        try:
            if not line.startswith(">"):
                raise ValueError
            flag, n = int(line[31]), int(line[32:35])
            if flag not in (2, 3, 4, 5):  # event lines may leave the time blank
                int(line[2:6]), float(line[18:29])
        except (ValueError, IndexError):
            raise _Problem(i, record, "expected an epoch line ('> yyyy mm dd ...')") from None
        for j in range(i + 1, i + 1 + n):
            sat = _line(lines, j, record)
            if flag in (2, 3, 4, 5):
                continue  # event records carry header lines
            if not _SAT.fullmatch(sat[:3]):
                raise _Problem(j, record, f"expected a satellite record, got {sat[:3]!r}")
            _fields(sat, 3, 16, _OBS_VALUE, j, record)
        i += 1 + n


def _obs2(lines: list[str], i: int) -> None:
    ntypes = next(int(ln[:6]) for ln in lines[:i] if ln[60:79] == "# / TYPES OF OBSERV")
    per_sat = max(1, ceil(ntypes / 5))
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        record = f"epoch {line[1:26].strip()}"
        try:
            flag, n = int(line[28]), int(line[29:32])
            if flag not in (2, 3, 4, 5):  # event lines may leave the time blank
                [int(line[c:c + 2]) for c in (1, 4, 7, 10, 13)]
                float(line[15:26])
        except (ValueError, IndexError):
            raise _Problem(i, record, "expected an epoch line (' yy mm dd hh mm ss')") from None
        if flag in (2, 3, 4, 5):
            for j in range(i + 1, i + 1 + n):
                _line(lines, j, record)
            i += 1 + n
            continue
        j = i + max(1, ceil(n / 12))  # satellite list continues every 12 satellites
        _line(lines, j - 1, record)
        for j in range(j, j + n * per_sat):
            _fields(_line(lines, j, record), 0, 16, _OBS_VALUE, j, record)
        i = j + 1 if n else i + 1


def _nav(lines: list[str], i: int, v3: bool, sys: str) -> None:
    first, cont = (23, 4) if v3 else (22, 3)
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        record = f"record {line[:first].strip()}"
        if v3:
            ok, count = bool(_SAT.fullmatch(line[:3])), 8 if line[:1] not in _NAV3_LINES else 4
        else:
            ok, count = line[:2].strip().isdigit(), _NAV2_LINES.get(sys, 8)
        if not ok:
            raise _Problem(i, "", "expected the first line of a navigation record")
        _fields(line, first, 19, _NAV_VALUE, i, record)
        end = i + count
        if v3:  # RINEX 3.05 GLONASS has an extra line: take every indented continuation line
            while end < len(lines) and lines[end].startswith("    ") and lines[end].strip():
                end += 1
            end = max(end, i + count)
        for j in range(i + 1, end):
            _fields(_line(lines, j, record), cont, 19, _NAV_VALUE, j, record)
        i = end


_WALKERS = {
    (3, "O"): _obs3, (2, "O"): _obs2,
    (3, "N"): lambda ln, i: _nav(ln, i, True, ""),
    **{(2, k): (lambda ln, i, k=k: _nav(ln, i, False, k)) for k in _NAV2_LINES},
}
