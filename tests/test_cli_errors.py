"""The CLI's one error path: a typed error becomes one line ``mapsvc: error: ...`` naming the field, exit 2;
and every name the store, signing and client validate refuses a trailing newline (issue 14 item 6)."""
from __future__ import annotations

import pytest

from mapsvc.cli import main


def run(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def one_error_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapsvc: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def pilot_osm(tmp_path_factory):
    from lanelets import build
    from mapsvc.demo import roadspec_path

    osm = tmp_path_factory.mktemp("pilot") / "pilot.osm"
    build(roadspec_path(), osm)
    return osm


@pytest.mark.parametrize("name", ["r\n", "r\r\n", "latest", "a/b", "-r"])
def test_publish_refuses_a_bad_release_name(pilot_osm, mapsvc_home, capsys, name):
    code, out, err = run(["publish", str(pilot_osm), "--release", name], capsys)
    assert code == 2
    one_error_line(err, "release name")
    from tiles import open_store

    assert open_store(mapsvc_home / "store").releases() == []


def test_a_published_name_is_served_by_that_name(pilot_osm, mapsvc_home, capsys):
    """The good name works end to end; the same name with a newline is another, unknown release."""
    main(["publish", str(pilot_osm), "--release", "r1", "--level", "14"])
    assert "published r1" in capsys.readouterr().out
    code, out, err = run(["releases", "show", "r1\n"], capsys)
    assert code == 2
    one_error_line(err, "unknown release")
    code, out, err = run(["releases", "diff", "r1", "r2"], capsys)
    assert code == 2
    one_error_line(err, "'r2'")


def test_key_ids_are_fullmatched(mapsvc_home, capsys):
    code, out, err = run(["keys", "export", "0" * 32 + "\n"], capsys)
    assert code == 2
    one_error_line(err, "key id")
    code, out, err = run(["keys", "export"], capsys)  # no key yet: the same path, not a traceback
    assert code == 2
    one_error_line(err, "keys create")


def test_fetch_errors_take_the_one_path(mapsvc_home, tmp_path, capsys):
    code, out, err = run(["fetch", "--server", "http://127.0.0.1:9", "--token", "t", "--lat", "39.8", "--lon",
                          "116.5", "--radius-m", "100", "--cache", str(tmp_path / "cache")], capsys)
    assert code == 2
    one_error_line(err, "pinned public key")


def test_token_errors_take_the_one_path(mapsvc_home, capsys):
    code, out, err = run(["tokens", "revoke", "nobody"], capsys)
    assert code == 2
    one_error_line(err, "nobody")
    code, out, err = run(["tokens", "create", "--role", "admin", "--name", "bad name\n"], capsys)
    assert code == 2
    one_error_line(err)


def test_click_choices_come_from_the_domain():
    from desensitize.profile import PROFILES
    from mapsvc.cli import cli
    from tokens import ROLES
    from standards.report import LANGS

    def choices(cmd, opt):
        return next(p for p in cmd.params if p.name == opt).type.choices

    assert set(choices(cli.commands["publish"], "profile")) == set(PROFILES)
    assert tuple(choices(cli.commands["check"], "lang")) == tuple(LANGS)
    assert tuple(choices(cli.commands["tokens"].commands["create"], "role")) == tuple(ROLES)
