class TileError(ValueError):
    """Bad tile input (level, tile id, bbox) or a tiling failure: one line."""


class StoreError(TileError):
    """A release-store operation that cannot be done (unknown release, name taken, corrupt blob)."""
