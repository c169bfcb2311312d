"""mapsvc CLI: ``mapsvc serve`` runs the NTRIP caster and, once it exists, the HTTP API.

The HTTP API plugs in through ``mapsvc.http.run_http(host, port, caster)``; without that module serve
runs the caster alone. The API's workers are other processes: the caster writes its station status
to ``$MAPSVC_HOME/cors_status.json`` (and Prometheus text to ``cors_status.prom``) every 2 s, read
with ``cors.caster.read_status(path)`` for ``GET /v1/stations`` and ``/metrics``.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import threading

import click

from mapsvc.config import home

HTTP_MODULE = "mapsvc.http"


def _http_runner():
    """The HTTP API's entry point if that module is installed, else None."""
    try:
        module = importlib.import_module(HTTP_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != HTTP_MODULE:
            raise
        return None
    return getattr(module, "run_http", None)


def _raise_nofile() -> None:
    """One file descriptor per rover: lift the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _addresses(text: str, option: str) -> tuple[str, ...]:
    """Comma-separated IP addresses (one line naming the option when one is not)."""
    import ipaddress

    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(str(ipaddress.ip_address(part)))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not an IP address", param_hint=option) from None
    return tuple(out)


def _network_config(stations, name, cell_m, move_m, atx):
    """The network mountpoint's configuration from serve's options (None: no network mountpoint)."""
    if stations is None:
        return None
    from cors.caster.kinds.network import NetworkConfig
    from cors.errors import CorsError

    ids = () if stations.strip().lower() == "all" else tuple(s.strip() for s in stations.split(",") if s.strip())
    if stations.strip().lower() != "all" and len(ids) < 2:
        raise click.BadParameter("a network needs two or more station ids", param_hint="--network-stations")
    try:
        return NetworkConfig(name=name, stations=ids, cell_m=cell_m, move_m=move_m, atx=atx)
    except CorsError as exc:
        raise click.UsageError(str(exc)) from None


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for the HTTP API and the caster.")
@click.option("--port", default=8080, show_default=True, type=int, help="HTTP API port.")
@click.option("--ntrip-port", default=2101, show_default=True, type=int, help="NTRIP caster port.")
@click.option("--no-http", is_flag=True, help="Run the NTRIP caster only.")
@click.option("--down-after", default=10.0, show_default=True, type=float,
              help="Seconds of silence before a station is marked down.")
@click.option("--max-backlog", default=16384, show_default=True, type=int,
              help="Bytes queued for a client before it is dropped as too slow.")
@click.option("--node-id", default="", help="This node's name in a cluster (MAPSVC_BUS): shown in /v1/stations "
              "as the node holding each client.")
@click.option("--max-streams-per-token", default=16, show_default=True, type=int,
              help="NTRIP streams one token may hold open at once (0: no limit).")
@click.option("--auth-free-failures", default=5, show_default=True, type=int,
              help="Failed NTRIP logins from one address before it must wait (doubling, up to 300 s).")
@click.option("--service-frame", default=None, metavar="FRAME[@EPOCH]",
              help="Frame of every 1005/1006 served (default: ITRF2014 at the current epoch); stations "
                   "registered in another frame are transformed.")
@click.option("--network-stations", default=None, metavar="ID,ID,...|all",
              help="Run the network RTK mountpoint over these registry stations (all: every station).")
@click.option("--network-mountpoint", default="VRS", show_default=True, help="Its mountpoint name.")
@click.option("--network-cell-m", default=5000.0, show_default=True, type=float,
              help="Grid cell (m): clients in one cell share one virtual station.")
@click.option("--network-move-m", default=5000.0, show_default=True, type=float,
              help="A client this far (m) from its virtual station gets a new one.")
@click.option("--network-atx", default=None, type=click.Path(exists=True, dir_okay=False),
              help="ANTEX file with the stations' antenna models (by the registry's antenna type).")
@click.option("--proxy-from", default="", metavar="IP,IP,...",
              help="Balancers (HAProxy send-proxy) whose connections may start with a PROXY header naming the "
                   "client: the caster and the HTTP API then limit and log by the client's address.")
@click.option("-v", "--verbose", is_flag=True, help="Log connections and station changes.")
def serve(host, port, ntrip_port, no_http, down_after, max_backlog, node_id, max_streams_per_token,
          auth_free_failures, service_frame, network_stations, network_mountpoint, network_cell_m, network_move_m,
          network_atx, proxy_from, verbose):
    """Run the NTRIP caster (and the HTTP API when available).

    With MAPSVC_BUS=redis://... the node publishes every frame it takes from a station to the bus and fans
    out what other nodes took; run several nodes (each with its own --node-id) behind HAProxy."""
    import os

    from cors.bus import open_bus
    from cors.caster import Caster, CasterInfo, new_event_loop_policy
    from mapsvc.config import open_stations, open_tokens

    network = _network_config(network_stations, network_mountpoint, network_cell_m, network_move_m,
                              network_atx)
    proxies = _addresses(proxy_from, "--proxy-from")
    _raise_nofile()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = home()
    registry = open_stations()
    tokens = open_tokens()
    run_http = None if no_http else _http_runner()
    bus = open_bus(os.environ.get("MAPSVC_BUS"), node_id or "1")
    status_file = f"cors_status.{node_id}.json" if node_id else "cors_status.json"
    asyncio.set_event_loop_policy(new_event_loop_policy())

    async def main():
        caster = Caster(registry, tokens, host=host, port=ntrip_port, info=CasterInfo(host=host, frame=service_frame or ""),
                        down_after=down_after, max_backlog=max_backlog,
                        max_streams_per_token=max_streams_per_token, auth_free_failures=auth_free_failures,
                        status_path=state / status_file, bus=bus, node_id=node_id, network=network,
                        proxy_from=proxies)
        await caster.start()
        click.echo(f"NTRIP caster on {host}:{caster.port} ({len(caster.mounts)} mountpoints)"
                   + (f", node {node_id}" if node_id else "") + (", on the bus" if bus else ""), err=True)
        if run_http is not None:
            # the HTTP app (gunicorn/Flask) runs beside the event loop and reads the caster's status
            # gunicorn reads the balancer's PROXY v1 line itself (proxy_protocol), from these addresses only
            proxy = {"proxy_protocol": True, "proxy_allow_ips": ",".join(proxies)} if proxies else {}
            threading.Thread(target=run_http, args=(host, port, caster), kwargs=proxy, daemon=True).start()
            click.echo(f"HTTP API on {host}:{port}; web console at http://{host}:{port}/", err=True)
        # SIGINT/SIGTERM stop the caster cleanly (chunked streams closed, final status written),
        # also when started in the background where SIGINT arrives ignored
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.create_task(caster.serve_forever())
        await stop.wait()
        serving.cancel()
        await caster.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        registry.close()
        tokens.close()


@click.command("archive")
@click.option("--name", default="1", show_default=True,
              help="Consumer name within the archive's group (one per archiver process).")
@click.option("--grace", default=120.0, show_default=True, type=float,
              help="Seconds after an hour ends before it is converted (late frames still go in).")
def archive_cmd(name, grace):
    """Keep every station's data from the bus (MAPSVC_BUS) as hourly RINEX 3 under $MAPSVC_HOME/rinex.

    Resumes from its last acknowledged entry after a restart; files are served to surveyors at
    /v1/stations/{id}/rinex/..."""
    import os

    from cors.archive import Archiver
    from cors.errors import CorsError
    from mapsvc.config import open_stations

    url = os.environ.get("MAPSVC_BUS")
    if not url:
        raise CorsError("mapsvc archive reads the station bus: set MAPSVC_BUS=redis://...")
    state = home()
    registry = open_stations()

    def stations():
        listed = registry.list()
        return {s.mountpoint: s.id for s in listed}, {s.id: s.country for s in listed}

    mounts, countries = stations()
    archiver = Archiver(url, state / "rinex", mounts, name=name, grace_s=grace, countries=countries)
    click.echo(f"archiving {len(mounts)} stations from {url.split('@')[-1]} to {state / 'rinex'}", err=True)
    try:
        while True:
            archiver.stations, archiver.countries = stations()
            archiver.step(block_ms=1000)
    except KeyboardInterrupt:
        pass
    finally:
        registry.close()


commands = [serve, archive_cmd]
