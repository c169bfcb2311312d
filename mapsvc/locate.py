"""The vehicle's side of a release: a position in a declared frame -> the release's frame -> its offset ->
the lanelet under it. Wires :mod:`lanelets.frames`, the offset provider registry and :mod:`lanelets.locate`.

Everything comes from the SIGNED manifest: the frame declaration (horizontal frame + epoch, vertical
reference, offset provider name/version/certified). A release without one, a provider this vehicle does not
have, or one that differs from the provider the release was made with is refused, never guessed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from lanelets.frames import FrameError, FrameTransform, parse


class LocateError(FrameError):
    """A position cannot be placed on this release (frame, epoch or offset provider); one line."""


@dataclass
class MapFrame:
    """What a release's manifest says about its coordinates, and the means to reach them."""

    release: str
    frame: str
    epoch: float
    offset: object            # desensitize.OffsetProvider
    declaration: dict

    @classmethod
    def of(cls, manifest: dict, home: str | os.PathLike | None = None, providers: dict | None = None) -> MapFrame:
        """``providers``: this vehicle's offset provider options by name (default: ``providers:`` in
        $MAPSVC_HOME/desensitize.yaml, as on the producer side)."""
        from desensitize import DesensitizeError, available, get_provider, load_settings

        release = manifest.get("release", "?")
        decl = manifest.get("frame")
        if not isinstance(decl, dict) or not decl.get("horizontal"):
            raise LocateError(f"release {release} declares no frame: refusing to place positions on it "
                              "(publish it again; releases now carry a signed frame declaration)")
        f, epoch = parse(decl["horizontal"], decl.get("epoch"))
        if epoch is None:
            raise LocateError(f"release {release}: frame {f.name} is declared without an epoch")
        applied = decl.get("offset") or {}
        name = applied.get("name")
        if not name:
            raise LocateError(f"release {release}: the frame declaration names no offset provider")
        if name not in available():
            raise LocateError(f"release {release} was offset with provider {name!r}, which is unknown here "
                              f"(known: {', '.join(sorted(available()))}); refusing")
        if providers is None:
            providers = load_settings(home).providers if home is not None else {}
        try:
            provider = get_provider(name, **dict(providers.get(name) or {}))
        except DesensitizeError as exc:
            raise LocateError(f"release {release} needs offset provider {name!r}, which this vehicle lacks: "
                              f"{exc}") from None
        if applied.get("version") and str(provider.version) != str(applied["version"]):
            raise LocateError(f"release {release} was offset with {name} {applied['version']}; this vehicle "
                              f"has {name} {provider.version}; refusing")
        from tiles.store import desensitisation_of

        made_with = (desensitisation_of(manifest) or {}).get("offset") or {}
        sha = made_with.get("library_sha256")
        if sha and getattr(provider, "sha256", sha) != sha:
            raise LocateError(f"release {release} was offset with library sha256 {sha[:16]}...; this vehicle's "
                              f"{name} library is {provider.sha256[:16]}...; refusing")
        return cls(release, f.name, epoch, provider, decl)

    def to_map(self, lon, lat, h=None, *, frame: str, epoch=None) -> tuple[np.ndarray, np.ndarray]:
        """True positions (lon, lat[, h]) in ``frame`` at ``epoch`` -> the release's published lon/lat."""
        src, src_epoch = parse(frame, None if np.ndim(epoch) else epoch)
        if src.dynamic and epoch is None and src_epoch is None:
            raise LocateError(f"positions in {src.name} need an epoch (--epoch YEAR or times in the file)")
        t = epoch if np.ndim(epoch) else src_epoch
        x, y, _ = FrameTransform(src.name, self.frame, self.epoch).by_cells(lon, lat, h, t)
        return self.offset.forward(x, y)
