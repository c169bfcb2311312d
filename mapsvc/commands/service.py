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


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for the HTTP API and the caster.")
@click.option("--port", default=8080, show_default=True, type=int, help="HTTP API port.")
@click.option("--ntrip-port", default=2101, show_default=True, type=int, help="NTRIP caster port.")
@click.option("--no-http", is_flag=True, help="Run the NTRIP caster only.")
@click.option("--down-after", default=10.0, show_default=True, type=float,
              help="Seconds of silence before a station is marked down.")
@click.option("--max-backlog", default=16384, show_default=True, type=int,
              help="Bytes queued for a client before it is dropped as too slow.")
@click.option("--max-streams-per-token", default=16, show_default=True, type=int,
              help="NTRIP streams one token may hold open at once (0: no limit).")
@click.option("--auth-free-failures", default=5, show_default=True, type=int,
              help="Failed NTRIP logins from one address before it must wait (doubling, up to 300 s).")
@click.option("-v", "--verbose", is_flag=True, help="Log connections and station changes.")
def serve(host, port, ntrip_port, no_http, down_after, max_backlog, max_streams_per_token, auth_free_failures,
          verbose):
    """Run the NTRIP caster (and the HTTP API when available)."""
    from cors.caster import Caster, CasterInfo, new_event_loop_policy
    from cors.stations import StationRegistry
    from tokens import TokenStore

    _raise_nofile()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = home()
    registry = StationRegistry(state / "stations.sqlite")
    tokens = TokenStore(state / "tokens.sqlite")
    run_http = None if no_http else _http_runner()
    asyncio.set_event_loop_policy(new_event_loop_policy())

    async def main():
        caster = Caster(registry, tokens, host=host, port=ntrip_port, info=CasterInfo(host=host),
                        down_after=down_after, max_backlog=max_backlog,
                        max_streams_per_token=max_streams_per_token, auth_free_failures=auth_free_failures,
                        status_path=state / "cors_status.json")
        await caster.start()
        click.echo(f"NTRIP caster on {host}:{caster.port} ({len(caster.mounts)} mountpoints)", err=True)
        if run_http is not None:
            # the HTTP app (gunicorn/Flask) runs beside the event loop and reads the caster's status
            threading.Thread(target=run_http, args=(host, port, caster), daemon=True).start()
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


commands = [serve]
