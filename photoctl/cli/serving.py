"""`photoctl cache` and `photoctl serve`: the response cache, and running the HTTP API.

How the server is run (uvicorn, its worker processes, the listen check) is photoctl.api.serve's
business; the command only picks host, port and workers from its options.
"""

from __future__ import annotations

import json

import click

from photoctl.cli.common import App, PhotoctlGroup, json_option, pass_app, response_cache
from photoctl.wording import plural


@click.group(cls=PhotoctlGroup)
def cache() -> None:
    """The response cache shared by every local serve process."""


@cache.command("clear")
@pass_app
def cache_clear(app: App) -> None:
    """Empty the response cache (every serve process on this machine sees it at once)."""
    removed = response_cache(app).clear()
    app.say(f"cache cleared ({plural(removed, 'entry')})")


@cache.command("stats")
@json_option("Print as JSON.")
@pass_app
def cache_stats(app: App, as_json: bool) -> None:
    """Entries, hits, misses and hit rate of the response cache."""
    figures = response_cache(app).stats()
    if as_json:
        click.echo(json.dumps(figures))
    else:
        click.echo(
            f"{plural(figures['size'], 'entry')}, {plural(figures['hits'], 'hit')}, "
            f"{plural(figures['misses'], 'miss', 'misses')}, hit rate {figures['hit_rate']:.1%}"
        )


@click.command()
@click.option("--host", help="Address to listen on [default: serve.host, 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [default: serve.port, 8000].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="uvicorn worker processes [default: serve.workers, 1].",
)
@pass_app
def serve(app: App, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP API (OpenAPI docs at /docs).

    Behind a reverse proxy on another machine, list it in serve.trusted_proxies: rate limits
    then count by the client address it forwards (X-Forwarded-For), not by the proxy's.

    \b
    Example:
      photoctl serve --port 8000 --workers 2
    """
    from photoctl.api.serve import run_server
    from photoctl.storage_identity import ensure_same

    # Images served from another storage than the database's would all answer 404.
    ensure_same(app.settings, app.engine())
    app.engine().dispose()  # uvicorn's processes make their own
    run_server(app.settings, host=host, port=port, workers=workers, verbosity=app.verbosity)
