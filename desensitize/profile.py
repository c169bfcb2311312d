"""Profiles and configuration: which offset provider, which rules, and what the profile allows.

Configuration comes from ``$MAPSVC_HOME/desensitize.yaml`` (optional), overridden by command-line options::

    profile: production            # or pilot-test
    offset_provider: vendor        # a name registered in the mapsvc.offset_providers entry-point group
    providers:                     # options per provider
      vendor: {library: /opt/vendor/libcnoffset.so, sha256: <pinned sha256 of that file>}
      gcj02: {region: polygon}     # polygon (default) | box-gcoord | box-wandergis | path to a polygon layer
    rules: /path/to/rules.yaml     # default: the rules shipped in desensitize/rules/default.yaml
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from desensitize.errors import DesensitizeError

CONFIG_FILE = "desensitize.yaml"
PROFILES = {
    "pilot-test": {
        "require_certified": False,
        "notice": "PILOT TEST ONLY: offset with {provider}, which is not a state-certified technique; "
                  "not for production use",
    },
    "production": {"require_certified": True, "notice": ""},
}
DEFAULT_PROFILE = "pilot-test"
DEFAULT_PROVIDER = "gcj02"


@dataclass
class Settings:
    profile: str = DEFAULT_PROFILE
    offset_provider: str = DEFAULT_PROVIDER
    providers: dict = field(default_factory=dict)
    rules: str | None = None

    def provider_options(self) -> dict:
        return dict(self.providers.get(self.offset_provider) or {})


def load_settings(home: str | Path | None = None, *, profile=None, offset_provider=None, rules=None) -> Settings:
    s = Settings()
    if home is not None:
        path = Path(home) / CONFIG_FILE
        if path.exists():
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise DesensitizeError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
            if not isinstance(doc, dict):
                raise DesensitizeError(f"{path}: expected a mapping")
            unknown = set(doc) - {"profile", "offset_provider", "providers", "rules"}
            if unknown:
                raise DesensitizeError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
            if not isinstance(doc.get("providers", {}), dict):
                raise DesensitizeError(f"{path}: 'providers' must map a provider name to its options")
            s = Settings(doc.get("profile", s.profile), doc.get("offset_provider", s.offset_provider),
                         doc.get("providers", {}) or {}, doc.get("rules"))
    if profile:
        s.profile = profile
    if offset_provider:
        s.offset_provider = offset_provider
    if rules:
        s.rules = str(rules)
    if s.profile not in PROFILES:
        raise DesensitizeError(f"unknown profile {s.profile!r} (known: {', '.join(PROFILES)})")
    return s


def check_profile(profile: str, provider) -> dict:
    """The profile's verdict on a provider (raises if the profile refuses it) and the report fields."""
    rules = PROFILES[profile]
    if rules["require_certified"] and not provider.certified:
        raise DesensitizeError(
            f"profile {profile}: offset provider {provider.name!r} is not certified; publishing is refused "
            "(configure a certified provider, e.g. --offset-provider vendor with a pinned sha256)")
    notice = rules["notice"].format(provider=provider.name) if not provider.certified else ""
    if provider.name == "gcj02" and notice:
        notice = notice.replace("gcj02", "the public GCJ-02 formula (gcj02)")
    return {"profile": profile, "certified": bool(provider.certified), "notice": notice or None}
