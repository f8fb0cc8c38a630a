"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for each request's head.

uvicorn times out an idle keep-alive connection, but not a request being sent: a client that
sends ``GET / HTTP/1.1`` and then one header line every few seconds holds a socket and a file
descriptor for as long as it likes (uvicorn issue #157), and the ASGI app, where the body's
deadline is kept (guard.py), never hears of it. Here a connection waiting for a request's head
(a new connection, or a kept-alive one that started sending its next request) gets
``serve.body_timeout_seconds`` to complete it; past that it is answered 408 and closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from photoctl.api.pages import with_security_headers
from photoctl.config import Settings

_TIMED_OUT_BODY = b"request headers too slow\r\n"
# Written by hand (h11 answers only a request it has parsed), with every error's headers.
_TIMED_OUT = b"".join(
    [
        b"HTTP/1.1 408 Request Timeout\r\n",
        *(
            name + b": " + value + b"\r\n"
            for name, value in with_security_headers(
                [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"connection", b"close"),
                    (b"content-length", str(len(_TIMED_OUT_BODY)).encode()),
                ]
            )
        ),
        b"\r\n",
        _TIMED_OUT_BODY,
    ]
)


class HeadDeadlineH11Protocol(H11Protocol):
    """H11Protocol that closes a connection whose request head is not complete in time."""

    # Set in each serve process from its settings (``configure``), before it accepts anything.
    head_seconds = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests and self._head_timer is None:
            self._arm()
        self._disarm_once_parsed(super().data_received, data)

    def on_response_complete(self) -> None:
        # A pipelined request already buffered is parsed here, not in data_received.
        self._disarm_once_parsed(super().on_response_complete)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm_once_parsed(self, step: Callable[..., None], *args: object) -> None:
        before = self.cycle
        step(*args)
        if self.cycle is not before:  # a new request's head was parsed
            self._disarm()

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.head_seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        # Mid-head, the client is owed an answer; still sending a body already answered, not.
        if self.conn.their_state is h11.IDLE:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def configure(settings: Settings) -> None:
    """This process's deadline for request heads: the same as for bodies."""
    HeadDeadlineH11Protocol.head_seconds = settings.serve.body_timeout_seconds
