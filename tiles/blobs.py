"""Content-addressed tile blobs in a directory (``sha256[:2]/sha256.osm.gz``), shared by every store back end."""
from __future__ import annotations

import re
from pathlib import Path

from lanelets.files import write_atomic
from tiles.errors import StoreError

SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        if not SHA256.fullmatch(sha or ""):
            raise StoreError(f"not a sha256: {sha!r}")
        return self.root / sha[:2] / f"{sha}.osm.gz"

    def put(self, data: bytes, sha: str) -> None:
        path = self.path(sha)
        if path.exists() and path.stat().st_size == len(data):
            return
        # tiles are public once published: readable by a front nginx serving the blob files directly
        write_atomic(path, data, mode=0o644)

    def read(self, sha: str) -> bytes:
        try:
            return self.path(sha).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {sha} is missing from the store") from None

    def remove_unused(self, used: set[str]) -> int:
        removed = 0
        for path in self.root.glob("*/*"):
            if path.name.split(".")[0] not in used:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class BlobFiles:
    """``blob``/``blob_file`` for a release store whose blobs are files in ``self.blobs`` (SQLite and PostgreSQL
    stores alike): listed before ``ReleaseStore`` in the bases, it fills those two abstract methods."""

    blobs: BlobDir

    def blob(self, sha256: str) -> bytes:
        return self.blobs.read(sha256)

    def blob_file(self, sha256: str) -> Path:
        return self.blobs.path(sha256)

    def derived_dir(self, kind: str) -> Path:
        # beside the blob directory (``blobs/sha256``), so it is as shared as the blobs are
        return self.blobs.root.parent / kind
