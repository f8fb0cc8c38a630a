"""Running the HTTP API under uvicorn, as `photoctl serve` does.

uvicorn's worker processes import the app by name (`app_from_env`) and build it from the
environment, so the settings are handed to them there. Two things uvicorn gets wrong for us
are put right before it starts: a busy port is one clear error instead of uvicorn's log line,
and the listener of --workers N gets TCP_NODELAY. uvicorn's proxy-headers middleware takes the
client address from X-Forwarded-For only when the peer is one of ``serve.trusted_proxies``.
"""

from __future__ import annotations

import os
import socket

import uvicorn
from uvicorn.config import Config

from photoctl import db
from photoctl.api.http_protocol import HeadDeadlineH11Protocol
from photoctl.config import Settings
from photoctl.config_sources import parse_trusted_proxies
from photoctl.errors import ConfigError

KEEP_ALIVE_SECONDS = 5


def run_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    verbosity: int = 0,
) -> None:
    """Serve the API until stopped; host, port and workers default to the serve.* settings.

    ConfigError when there is no database (nothing is created) or host:port cannot be bound.
    ``verbosity`` as the CLI counts it: below 0 only warnings, above 0 an access log too.
    """
    # Create or upgrade the schema once, before the workers start; each opens its own engine.
    db.open_database(settings).dispose()
    # uvicorn's worker processes build the app from the environment: hand them our settings.
    os.environ["PHOTOCTL_DATA_DIR"] = str(settings.data_dir)
    os.environ["PHOTOCTL_DATABASE_URL"] = settings.database_url
    os.environ["PHOTOCTL_FACES_ENGINE"] = settings.faces.engine
    if settings.config_file:
        os.environ["PHOTOCTL_CONFIG"] = str(settings.config_file.resolve())
    host, port = host or settings.serve.host, port or settings.serve.port
    check_can_listen(host, port)
    listen_without_nagle()
    # Ours, not uvicorn's FORWARDED_ALLOW_IPS: one setting, shown by `config show`.
    proxies = parse_trusted_proxies(settings.serve.trusted_proxies)
    uvicorn.run(
        "photoctl.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.serve.workers,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
        log_level="warning" if verbosity < 0 else "info",
        access_log=verbosity > 0,
        # An idle keep-alive connection is closed after this (uvicorn's default, said here so
        # it stays short); a body's deadline is the body guard's serve.body_timeout_seconds.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # h11 with a deadline for request heads (http_protocol.py); uvicorn has none.
        http=HeadDeadlineH11Protocol,
    )


def listen_without_nagle() -> None:
    """TCP_NODELAY on the socket uvicorn binds itself for --workers N (N > 1).

    uvicorn creates that listener with proto 0, and asyncio sets TCP_NODELAY only on accepted
    sockets whose proto is IPPROTO_TCP (uvicorn issue #3149): every keep-alive response after
    the first then waits ~40 ms for the client's delayed ACK (44 ms per request measured with
    scripts/bench_serve.py --serve-workers 2). Accepted sockets inherit TCP_NODELAY from the
    listener, so it is set there. --workers 1 is not affected (asyncio binds that listener).
    """
    bind_socket = Config.bind_socket
    if getattr(bind_socket, "photoctl_nodelay", False):
        return

    def bind_without_nagle(self: Config) -> socket.socket:
        sock = bind_socket(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    # A marker on our own function, and the patch itself: neither is in uvicorn's types.
    bind_without_nagle.photoctl_nodelay = True  # type: ignore[attr-defined]
    Config.bind_socket = bind_without_nagle  # type: ignore[method-assign]


def check_can_listen(host: str, port: int) -> None:
    """ConfigError (one line, exit 2) if host:port cannot be bound, e.g. already in use.

    uvicorn would log the bind error with its own prefix and exit 1; binding once here, the way
    uvicorn binds (SO_REUSEADDR), turns it into photoctl's one `Error:` line.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            reason = (error.strerror or str(error)).lower()
            raise ConfigError(
                f"cannot listen on {host}:{port}: {reason} (give another --port or serve.port)"
            ) from None
