"""mapsvc CLI: reference stations (``stations``), caster/API tokens (``tokens``), replay and rover.

Wiring only: the registry lives in cors.stations, tokens in the top-level tokens package; state under
``mapsvc.config.home()`` (stations.sqlite, tokens.sqlite), or the PostgreSQL store (``mapsvc.config.state_db``).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from mapsvc.config import home, open_stations, open_tokens, state_db
from tokens import ROLES


def registry():
    return open_stations()


def token_store():
    return open_tokens()


# --- stations ---------------------------------------------------------------------------------------

@click.group("stations")
def stations() -> None:
    """The reference-station registry."""


@stations.command("add")
@click.argument("station_id")
@click.option("--mountpoint", required=True, help="NTRIP mountpoint (A-Z a-z 0-9 _ . -).")
@click.option("--ecef", required=True, help="Antenna reference point X,Y,Z (m, ECEF).")
@click.option("--password", default=None, help="Source password (required for push stations).")
@click.option("--name", default="", help="Station name (sourcetable identifier).")
@click.option("--receiver", default="", help="Receiver type (sourcetable generator).")
@click.option("--antenna", default="", help="Antenna type.")
@click.option("--source", default="push", show_default=True,
              help="push | tcp://HOST:PORT | ntrip://USER:PASS@HOST:PORT/MOUNT | rinex:OBS?nav=NAV")
@click.option("--format", "fmt", default="RTCM 3.3", show_default=True, help="Stream format.")
@click.option("--messages", default="", help="Message types with intervals, e.g. 1006(10),1077(1).")
@click.option("--nav-system", default="", help="e.g. GPS+GLO+GAL (default: what the station sends).")
@click.option("--carrier", type=click.IntRange(0, 2), default=2, show_default=True,
              help="0 none, 1 L1, 2 L1+L2.")
@click.option("--country", default="XXX", show_default=True, help="ISO 3166 alpha-3 code.")
@click.option("--frame", "frame", default=None, metavar="FRAME@EPOCH",
              help="Frame and epoch of --ecef, e.g. ITRF2014@2020.0 or CGCS2000 (default: the service frame).")
def stations_add(station_id, mountpoint, ecef, password, name, receiver, antenna, source, fmt, messages,
                 nav_system, carrier, country, frame):
    """Register a reference station."""
    from cors.stations import Station, parse_ecef

    st = Station(id=station_id, mountpoint=mountpoint, ecef=parse_ecef(ecef), name=name, receiver=receiver,
                 antenna=antenna, format=fmt, messages=messages, nav_system=nav_system, carrier=carrier,
                 country=country.upper(), source=source, frame=frame)
    reg = registry()
    try:
        reg.add(st, password=password)
    finally:
        reg.close()
    click.echo(f"station {station_id} added (mountpoint {mountpoint}, source {st.source_spec.public()})")


@stations.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def stations_list(as_json):
    """List registered stations (approximate positions only)."""
    reg = registry()
    try:
        rows = [s.public() for s in reg.list()]
    finally:
        reg.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ID':<12} {'MOUNTPOINT':<16} {'LAT':>7} {'LON':>8} {'SOURCE':<6} NAME")
    for r in rows:
        click.echo(f"{r['id']:<12} {r['mountpoint']:<16} {r['approx_lat']:>7.2f} {r['approx_lon']:>8.2f} "
                   f"{r['source']:<6} {r['name']}")


@stations.command("show")
@click.argument("station_id")
def stations_show(station_id):
    """Show one station, with its precise ARP (operator view)."""
    reg = registry()
    try:
        st = reg.get(station_id)
    finally:
        reg.close()
    click.echo(json.dumps(st.private(), indent=2))


@stations.command("remove")
@click.argument("station_id")
def stations_remove(station_id):
    """Remove a station from the registry."""
    reg = registry()
    try:
        reg.remove(station_id)
    finally:
        reg.close()
    click.echo(f"station {station_id} removed")


# --- tokens -----------------------------------------------------------------------------------------

@click.group("tokens")
def tokens() -> None:
    """Tokens for the HTTP API and the NTRIP caster (user name = token name, password = token)."""


@tokens.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", default=None, help="Token name (NTRIP user name); default role-xxxxxxxx.")
@click.option("--mountpoints", default=None, help="Comma-separated mountpoints this token may use (default all).")
def tokens_create(role, name, mountpoints):
    """Create a token and print it once (only its hash is kept)."""
    store = token_store()
    try:
        mps = [m.strip() for m in mountpoints.split(",") if m.strip()] if mountpoints else None
        token = store.create(role, name, mountpoints=mps)
        rec = store.verify(token)
    finally:
        store.close()
    click.echo(f"name:  {rec.name}", err=True)
    click.echo(f"role:  {rec.role}", err=True)
    click.echo("token (shown once):", err=True)
    click.echo(token)


@tokens.command("list")
def tokens_list():
    """List tokens (names and roles; never the tokens)."""
    store = token_store()
    try:
        rows = store.list()
    finally:
        store.close()
    click.echo(f"{'NAME':<24} {'ROLE':<9} {'STATE':<8} MOUNTPOINTS")
    for t in rows:
        mps = ",".join(t.mountpoints) if t.mountpoints else "*"
        click.echo(f"{t.name:<24} {t.role:<9} {'revoked' if t.revoked else 'active':<8} {mps}")


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name):
    """Revoke a token by name."""
    store = token_store()
    try:
        if not store.revoke(name):
            from tokens import TokenError

            raise TokenError(f"no active token named {name!r} in {store.path}")
    finally:
        store.close()
    click.echo(f"token {name} revoked")


commands = [stations, tokens]

# --- replay/rover commands (RTCM helper) ---


def _replay_ecef(ecef_text, station, target):
    """--ecef, else the registered station (--station, else the URL's ID or mountpoint)."""
    from cors.replay import station_defaults
    from cors.stations import parse_ecef

    if ecef_text:
        return parse_ecef(ecef_text)
    for ref in (station, target.user, target.mountpoint):
        if ref:
            found = station_defaults(ref, state_db("stations.sqlite"))
            if found:
                return found["ecef"]
    return None


@click.command("replay")
@click.argument("obs", type=click.Path(dir_okay=False))
@click.option("--nav", multiple=True, type=click.Path(dir_okay=False),
              help="RINEX navigation file(s) for the 1019/1020/1042/1044/1045/1046 ephemerides.")
@click.option("--to", "to", required=True,
              help="ntrip://ID:PASSWORD@HOST:PORT/MOUNT (or tcp://HOST:PORT, file:PATH).")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Wall-clock speed-up; epochs keep their own GNSS times.")
@click.option("--loop", is_flag=True, help="Start again at the end of the file.")
@click.option("--ecef", default=None,
              help="ARP X,Y,Z (m) for 1006; default: the registered station, else the RINEX header.")
@click.option("--msm", type=click.Choice(["4", "7"]), default="7", show_default=True)
@click.option("--ntrip-version", type=click.Choice(["1", "2"]), default="2", show_default=True,
              help="1: SOURCE upload, 2: POST with Basic auth.")
@click.option("--station", default=None,
              help="Registered station whose ARP to send (default: the ID in --to, or its mountpoint).")
@click.option("--rtcm-id", type=click.IntRange(0, 4095), default=None,
              help="RTCM reference station id (DF003); default: the digits of the station id.")
@click.option("--epochs", "max_epochs", type=int, default=None, help="Stop after N epochs.")
@click.option("--hold", type=float, default=0.0, show_default=True,
              help="Seconds between announcing the station (1006/1033) and its first epoch, "
                   "so rovers can attach and see the whole file.")
@click.option("--position-tolerance-m", type=click.FloatRange(min=0.0), default=30.0,
              show_default=True,
              help="Warn when the station ARP is farther than this from the data's own "
                   "single-point (SPP) position.")
def replay_cmd(obs, nav, to, speed, loop, ecef, msm, ntrip_version, station, rtcm_id, max_epochs, hold,
               position_tolerance_m):
    """Replay a RINEX observation file as a live station to an NTRIP caster (RTCM 3 via RTKLIB)."""
    import asyncio

    from cors.replay import ReplayConfig, parse_target, replay, rtcm_station_id
    from cors.rinex_check import check_rinex
    from cors.rtcm_encode import read_rinex
    from cors.station_position import position_warning

    target = parse_target(to)
    for path in (obs, *nav):  # RTKLIB drops a broken record silently: say so, or refuse the file
        cut = check_rinex(path)
        if cut:
            click.echo(f"replay: warning: {cut}", err=True)
    source = read_rinex(obs, nav)
    xyz = _replay_ecef(ecef, station, target)
    if xyz is None:
        xyz = source.header_ecef
        click.echo(f"replay: warning: {obs}: using the RINEX header position as ARP "
                   "(give --ecef or register the station)", err=True)
    warning = position_warning(source, xyz, position_tolerance_m)
    if warning:
        click.echo(f"replay: warning: {warning}", err=True)
    sid = rtcm_id if rtcm_id is not None else rtcm_station_id(station or target.user or target.mountpoint)
    cfg = ReplayConfig(obs, nav, xyz, speed, loop, int(msm), sid)
    click.echo(f"replay: {obs} -> {target.public()} ({len(source.epochs)} epochs, "
               f"MSM{msm}, x{speed:g})", err=True)
    try:
        stats = asyncio.run(replay(cfg, to, ntrip_version=int(ntrip_version), max_epochs=max_epochs,
                                   log=lambda m: click.echo(m, err=True), hold=hold))
    except KeyboardInterrupt:
        click.echo("replay: stopped", err=True)
        return
    click.echo(json.dumps(stats.as_dict()))


@click.command("rover")
@click.argument("obs", type=click.Path(dir_okay=False))
@click.option("--nav", multiple=True, type=click.Path(dir_okay=False),
              help="RINEX navigation file(s); default: ephemerides from the correction stream.")
@click.option("--caster", required=True, help="ntrip://USER:TOKEN@HOST:PORT/MOUNT")
@click.option("--conf", type=click.Path(dir_okay=False), default=None,
              help="RTKLIB rnx2rtkp conf (default: kinematic L1+L2 GPS+GAL, 15 deg).")
@click.option("--ntrip-version", type=click.Choice(["1", "2"]), default="2", show_default=True)
@click.option("--max-wait", type=float, default=2.0, show_default=True,
              help="Seconds an epoch waits for its base epoch.")
@click.option("--quiet", is_flag=True, help="Only the summary.")
@click.option("--json", "as_json", is_flag=True, help="Summary as JSON.")
@click.option("--map", "map_cache", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Vehicle cache (`mapsvc fetch`): also print the lanelet under the rover at each epoch.")
@click.option("--frame", default="ITRF2014", show_default=True,
              help="Frame of the base coordinates the caster sends (its declared service frame).")
@click.option("--epoch", type=float, default=None, help="Epoch of --frame (default: each epoch's own time).")
def rover_cmd(obs, nav, caster, conf, ntrip_version, max_wait, quiet, as_json, map_cache, frame, epoch):
    """RTK epoch by epoch (RTKLIB rtkpos) with corrections from an NTRIP caster."""
    from cors.rover import RoverConfig, rover

    cfg = RoverConfig(obs, caster, nav, conf, int(ntrip_version), max_wait)
    on_epoch = None if quiet else (lambda st: click.echo(st.line()))
    if map_cache is not None:
        from mapsvc.commands.locate import epoch_locator

        where = epoch_locator(map_cache, frame, epoch)
        on_epoch = lambda st: click.echo(st.line() + where(st))  # noqa: E731
    try:
        result = rover(cfg, on_epoch=on_epoch, log=lambda m: click.echo(m, err=True))
    except KeyboardInterrupt:
        click.echo("rover: stopped", err=True)
        return
    if as_json:
        click.echo(json.dumps(result.summary | {"seconds": round(result.seconds, 3)}))
    else:
        click.echo(f"rover: {result.summary['summary']} ({result.seconds:.1f} s)")


commands += [replay_cmd, rover_cmd]
