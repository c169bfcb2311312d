"""Files written whole or not at all, and hashed without reading them into memory.

The one atomic writer of the tree (maps, tiles, keys, caches, reports, the caster's status). It sits in
``lanelets``, the package every other one may import, because it knows nothing of maps.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None, *, fsync: bool = True, suffix: str = ".tmp"):
    """A temp path in ``path``'s folder to write to (for writers that want a file name, e.g. lanelet2.io);
    renamed over ``path`` when the block ends without an error, removed otherwise. Never a half-written file.

    ``mode`` sets the permissions (default 0600, mkstemp's); ``fsync=False`` for files rewritten every few
    seconds whose loss at a power cut does not matter (the rename is still atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        os.close(fd)
        yield Path(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str, mode: int | None = None, *,
                 fsync: bool = True) -> None:
    """Write ``data`` to ``path`` all or nothing (see :func:`atomic_path`)."""
    with atomic_path(path, mode, fsync=fsync) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (streamed by hashlib)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
