"""Desensitise maps before they leave the producer: coordinate offset, secret content, audit.

- :func:`get_provider` / :class:`OffsetProvider`: offset providers by name (``gcj02`` public formula,
  ``vendor`` certified library via ctypes, more through the ``mapsvc.offset_providers`` entry points).
- :func:`load_rules`: the rule set (YAML data, validated). :func:`read_restricted_areas`: GDAL polygons.
- :func:`desensitize`: one map -> desensitised map + report + audit (profile ``pilot-test``/``production``).
- :func:`require_clean`: the final scan of the tiles to be published.
- :func:`desensitize_raster`: raster layers (mask, degrade elevation, resample through the offset, COG).
"""
from __future__ import annotations

from desensitize.errors import DesensitizeError
from desensitize.provider import OffsetProvider, available, get_provider
from desensitize.rules import RuleSet, load_rules
from desensitize.profile import PROFILES, Settings, check_profile, load_settings


def read_restricted_areas(path):
    from desensitize.engine import Restricted
    from desensitize.region import read_polygons

    polygons, labels = read_polygons(path)
    return Restricted(polygons, labels, str(path))


def desensitize(m, *, settings: Settings | None = None, provider: OffsetProvider | None = None,
                rules: RuleSet | None = None, restricted=None, origin=None):
    """Run the whole step on an :class:`lanelets.osm.OsmMap`. The profile is checked first, so a refused
    provider costs nothing. Returns :class:`desensitize.engine.Result`; ``result.report`` goes in the
    release manifest, ``result.audit`` in the restricted store."""
    from desensitize.engine import desensitize_map

    settings = settings or Settings()
    provider = provider or get_provider(settings.offset_provider, **settings.provider_options())
    verdict = check_profile(settings.profile, provider)
    rules = rules or load_rules(settings.rules)
    if restricted is not None and not hasattr(restricted, "polygons"):
        restricted = read_restricted_areas(restricted)
    result = desensitize_map(m, rules, provider, restricted=restricted, origin=origin)
    result.report = {**verdict, **result.report}
    result.provider = provider
    result.rules = rules
    result.restricted = restricted
    return result


def desensitize_raster(*args, **kwargs):
    from desensitize.raster import desensitize_raster as impl

    return impl(*args, **kwargs)


__all__ = ["DesensitizeError", "OffsetProvider", "available", "get_provider", "RuleSet", "load_rules",
           "PROFILES", "Settings", "load_settings", "check_profile", "read_restricted_areas", "desensitize",
           "desensitize_raster"]
