"""Compliance of a published release: the desensitisation final scan, the recorded offset provider, and that
every stored tile matches its manifest hash and the manifest its signature. Uses desensitize's and
tiles.signing's public functions; nothing is re-implemented here.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from standards.registry import Hits, check


def _map_hits(items: list[tuple[str, str]], checked: int, kind="release", ids=None) -> Hits:
    ids = np.zeros(len(items), np.int64) if ids is None else np.asarray(ids, np.int64)
    return Hits(kind, ids, np.nan, np.nan, [d for _, d in items], checked=checked,
                severity=np.array([s for s, _ in items], dtype=object))


def release_tiles(ctx) -> list:
    rel = ctx.release
    if "_tiles" not in rel:
        store, name = rel["store"], rel["name"]
        rel["_tiles"] = [SimpleNamespace(id=t["id"], data=store.tile(name, t["id"])[0])
                         for t in rel["manifest"]["tiles"]]
    return rel["_tiles"]


@check("compliance.desensitisation_scan", element="compliance", severity="A",
       description="The final desensitisation scan of the stored tiles finds forbidden content (SEC-16).",
       needs=("release",))
def desensitisation_scan(ctx) -> Hits:
    from desensitize import load_rules, load_settings
    from desensitize.scan import scan_tiles

    settings = load_settings(ctx.release.get("home"))
    tiles = release_tiles(ctx)
    found = scan_tiles(tiles, load_rules(settings.rules))
    return _map_hits([("A", f) for f in found], checked=max(1, len(tiles)))


@check("compliance.offset_provider", element="compliance", severity="A",
       description="The release records no offset, or an offset provider that is not state-certified (SEC-01); "
                   "class C under the pilot-test profile, class A otherwise.",
       needs=("release",))
def offset_provider(ctx) -> Hits:
    from tiles.store import desensitisation_of

    d = desensitisation_of(ctx.release["manifest"])
    items = []
    if not isinstance(d, dict):
        items.append(("A", "the manifest records no desensitisation"))
    else:
        off = d.get("offset") or {}
        name = off.get("name")
        certified = bool(d.get("certified", off.get("certified", False)))
        if not name:
            items.append(("A", "the manifest records no offset provider"))
        elif not certified:
            # The pilot-test profile allows the public formula inside a closed test zone (the report says so);
            # anything else with an uncertified offset must not be published.
            pilot = d.get("profile") == "pilot-test"
            items.append(("C" if pilot else "A",
                          f"offset provider {name} is not state-certified"
                          f"{' (allowed only by the pilot-test profile)' if pilot else ''}: "
                          f"{d.get('notice') or 'not for publication'}"))
        if off.get("points_outside_region"):
            items.append(("C", f"{off['points_outside_region']} points outside the provider's region were not moved"))
    return _map_hits(items, checked=1)


@check("compliance.tile_integrity", element="compliance", severity="A",
       description="A stored tile does not match its manifest hash, or the manifest signature is missing or "
                   "does not verify.", needs=("release",))
def tile_integrity(ctx) -> Hits:
    from tiles import signing
    from tiles.errors import StoreError

    store, name = ctx.release["store"], ctx.release["name"]
    items = [("A", p) for p in store.verify(name)]
    try:
        sig = store.attachment(name, signing.SIG_ATTACHMENT)
    except StoreError:
        items.append(("A", "the manifest is not signed (no manifest.sig)"))
    else:
        try:
            doc = signing.parse_signature(sig)
            key = signing.public_key(ctx.release["home"], doc["key_id"]).public_key
            signing.verify_bytes(store.manifest_raw(name), doc, key)
        except (signing.SignatureError, OSError, ValueError) as exc:
            items.append(("A", f"manifest signature: {exc}"))
    return _map_hits(items, checked=len(ctx.release["manifest"]["tiles"]) + 1)
