"""Synthetic enlargements of real maps for benchmarks and stress tests (never committed as data).

``replicate`` lays N copies of a real map side by side (shifted east) with IDs offset per copy, working on
the text so that a 100 MB map is made in seconds.
"""
from __future__ import annotations

import re
from pathlib import Path

_ID = re.compile(rb'\b(id|ref)="(-?\d+)"')
_LON = re.compile(rb'\blon="(-?[0-9.]+)"')
_LOCAL_X = re.compile(rb'(<tag k="local_x" v=")(-?[0-9.]+)(")')


def replicate(src: str | Path, dst: str | Path, copies: int, dlon: float = 0.01, dx_m: float = 1000.0) -> Path:
    data = Path(src).read_bytes()
    head_end = data.index(b">", data.index(b"<osm")) + 1
    head, body = data[:head_end], data[head_end:data.rindex(b"</osm>")]
    # Top-level non-OSM elements (MetaInfo, bounds) appear once, in the first copy only.
    meta = re.findall(rb"\s*<(?:MetaInfo|bounds)\b[^>]*/>", body)
    for m in meta:
        body = body.replace(m, b"", 1)
    ids = [int(x) for x in re.findall(rb'\bid="(-?\d+)"', body)]
    span = max(abs(i) for i in ids) + 1 if ids else 1
    out = [head, *meta, b"\n"]
    for k in range(copies):
        if k == 0:
            out.append(body)
            continue
        off = k * span
        part = _ID.sub(lambda m: b'%s="%d"' % (m.group(1), int(m.group(2)) + (off if int(m.group(2)) >= 0 else -off)), body)
        part = _LON.sub(lambda m: b'lon="%.11f"' % (float(m.group(1)) + k * dlon), part)
        part = _LOCAL_X.sub(lambda m: m.group(1) + b"%.4f" % (float(m.group(2)) + k * dx_m) + m.group(3), part)
        out.append(part)
    out.append(b"</osm>\n")
    dst = Path(dst)
    dst.write_bytes(b"".join(out))
    return dst
