"""API configuration: defaults < file (MAPSVC_API_CONFIG) < MAPSVC_* environment < the caller's dict."""
from __future__ import annotations

import pytest

from mapsvc.api import create_app
from mapsvc.api.config import load_config


def test_precedence(tmp_path, monkeypatch):
    conf = tmp_path / "api.yaml"
    conf.write_text("rate_limit: 10 per second\nmax_query_bytes: 100\nsecure_link_ttl: 60\n")
    monkeypatch.setenv("MAPSVC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAPSVC_API_CONFIG", str(conf))
    monkeypatch.setenv("MAPSVC_MAX_QUERY_BYTES", "200")
    monkeypatch.setenv("MAPSVC_ACCESS_LOG", "false")
    cfg = load_config({"secure_link_ttl": 30})
    assert cfg["RATE_LIMIT"] == "10 per second"      # file
    assert cfg["MAX_QUERY_BYTES"] == 200               # env over file, typed
    assert cfg["ACCESS_LOG"] is False
    assert cfg["SECURE_LINK_TTL"] == 30                # caller over all
    assert cfg["STORE_URL"] == str((tmp_path / "home" / "store").resolve())
    assert cfg["TOKENS_DB"] == str((tmp_path / "home" / "tokens.sqlite").resolve())


def test_apps_share_no_state(tmp_path):
    a = create_app({"HOME": str(tmp_path / "a"), "MAX_QUERY_BYTES": 10})
    b = create_app({"HOME": str(tmp_path / "b")})
    assert a.extensions["mapsvc"]["catalogue"] is not b.extensions["mapsvc"]["catalogue"]
    assert a.test_client().get("/v1/health?" + "x" * 20).status_code == 414
    assert b.test_client().get("/v1/health?" + "x" * 20).status_code == 200


def test_bad_config_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config({"CONFIG_FILE": str(bad), "HOME": str(tmp_path)})
    with pytest.raises(ValueError, match="RATE_LIMIT_ENGINE"):
        create_app({"HOME": str(tmp_path), "RATE_LIMIT_ENGINE": "nope"})
