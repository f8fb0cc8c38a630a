"""A TCP forwarder on 127.0.0.1 that tests switch between working, down and hanging.

Put it in front of a real server (SeaweedFS's S3 port) to see what photoctl does when that
server goes away or answers too slowly, without touching the server itself: ``mode = "pass"``
forwards bytes both ways, ``"down"`` closes every new connection at once (and cuts the open
ones), ``"hang"`` accepts connections and never answers. ``refuse_next(n)`` is a blip: the open
connections are cut and the next ``n`` new ones closed at once, then it forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["pass", "down", "hang"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._to_refuse = 0
        self.refused = 0  # connections closed at once by refuse_next
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode != "pass":
            self._cut_open()

    def _cut_open(self) -> None:
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def refuse_next(self, count: int) -> None:
        with self._lock:
            self._to_refuse = count
        self._cut_open()

    def _refusing(self) -> bool:
        with self._lock:
            if self._to_refuse <= 0:
                return False
            self._to_refuse -= 1
            self.refused += 1
            return True

    def close(self) -> None:
        self._closed = True
        self.set_mode("down")
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "down" or self._refusing():
                client.close()
                continue
            self._track(client)
            if self.mode == "hang":
                continue  # held open, never answered (closed by set_mode or close)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._track(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or self.mode != "pass":
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._open.discard(sock)
