"""A request body, or a request's headers, that do not arrive in time are cut off with 408 and
the socket closed (issue 20, item 10), and an idle keep-alive connection is closed after
uvicorn's keep-alive timeout.

A real `photoctl serve` with ``serve.body_timeout_seconds = 2``, and raw sockets that trickle a
selfie enrollment one byte at a time (the attack: hundreds of them held serve's sockets and file
descriptors for as long as they liked), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.support.cli import run_photoctl
from tests.support.serve import Server, start_server, stop_server

BODY_TIMEOUT = 2
SLUG = "trickle-run"
SELFIE_HEAD = (
    f"POST /api/e/{SLUG} HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Content-Type: multipart/form-data; boundary=xyz\r\n"
    "Content-Length: 200000\r\n\r\n"
).encode()
FILE_PART = (
    b'--xyz\r\nContent-Disposition: form-data; name="selfie"; filename="me.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
)


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    running = start_server(tmp_path, db_url, PHOTOCTL_SERVE_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT))
    created = run_photoctl(["events", "create", SLUG, "--title", "Trickle"], running.env)
    assert created.returncode == 0, created.stderr
    yield running
    stop_server(running)


def connect(server: Server) -> socket.socket:
    address = urlparse(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=10)


def open_sockets(server: Server) -> int:
    """Serve's open socket descriptors (database files and the like left out)."""
    folder = f"/proc/{server.process.pid}/fd"
    found = 0
    for name in os.listdir(folder):
        try:
            found += os.readlink(f"{folder}/{name}").startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    return found


def read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection (AssertionError if it does
    not within ``seconds``)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while data := sock.recv(4096):
            received += data
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s: {received[:200]!r}") from None
    except ConnectionResetError:
        pass
    return received


def test_a_trickled_selfie_is_cut_off_with_408_and_its_socket_closed(server: Server) -> None:
    baseline = open_sockets(server)
    clients = [connect(server) for _ in range(20)]
    started = time.monotonic()
    for sock in clients:
        sock.sendall(SELFIE_HEAD + FILE_PART)
    time.sleep(0.5)
    held = open_sockets(server)
    # One byte a quarter second from each: a live connection that never finishes its body.
    answered: dict[int, bytes] = {}
    while len(answered) < len(clients) and time.monotonic() - started < BODY_TIMEOUT + 8:
        for index, sock in enumerate(clients):
            if index in answered:
                continue
            try:
                sock.sendall(b"x")
            except OSError:  # closed by the server: read what it said
                answered[index] = read_until_closed(sock, 5)
                continue
            sock.settimeout(0.01)
            try:
                if data := sock.recv(4096):
                    answered[index] = data + read_until_closed(sock, 5)
            except TimeoutError:
                pass
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    for sock in clients:
        sock.close()

    assert held >= baseline + len(clients), "the trickling sockets were open meanwhile"
    assert len(answered) == len(clients), f"{len(clients) - len(answered)} still open"
    for answer in answered.values():
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"connection: close" in answer.lower()
    assert BODY_TIMEOUT - 0.5 < elapsed < BODY_TIMEOUT + 6
    deadline = time.monotonic() + 5
    while open_sockets(server) > baseline + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_sockets(server) <= baseline + 2, "serve kept the trickling sockets open"


def test_trickled_request_headers_are_cut_off_with_408_too(server: Server) -> None:
    baseline = open_sockets(server)
    clients = [connect(server) for _ in range(10)]
    started = time.monotonic()
    for sock in clients:
        sock.sendall(f"POST /api/e/{SLUG} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
    answered: dict[int, bytes] = {}
    line = 0
    while len(answered) < len(clients) and time.monotonic() - started < BODY_TIMEOUT + 8:
        line += 1
        for index, sock in enumerate(clients):
            if index in answered:
                continue
            try:
                sock.sendall(f"X-Slow-{line}: 1\r\n".encode())
                sock.settimeout(0.01)
                if data := sock.recv(4096):
                    answered[index] = data + read_until_closed(sock, 5)
            except TimeoutError:
                pass
            except OSError:
                answered[index] = read_until_closed(sock, 5)
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    for sock in clients:
        sock.close()

    assert len(answered) == len(clients), f"{len(clients) - len(answered)} still open"
    for answer in answered.values():
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"x-content-type-options: nosniff" in answer and b"no-store" in answer
    assert BODY_TIMEOUT - 0.5 < elapsed < BODY_TIMEOUT + 6
    deadline = time.monotonic() + 5
    while open_sockets(server) > baseline + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_sockets(server) <= baseline + 2


def test_pipelined_requests_are_answered_and_a_slow_next_head_is_cut(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n" * 2)
        answers = b""
        while answers.count(b'{"status":"ok"}') < 2:
            answers += sock.recv(4096)
        assert answers.count(b"HTTP/1.1 200 ") == 2
        # The kept-alive connection starts its next request and never finishes the head.
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = b""
        for line in range(BODY_TIMEOUT * 4 + 8):
            try:
                sock.sendall(f"X-Slow-{line}: 1\r\n".encode())
                sock.settimeout(0.01)
                if answer := sock.recv(4096):
                    answer += read_until_closed(sock, 5)
                    break
            except TimeoutError:
                pass
            except OSError:
                answer = read_until_closed(sock, 5)
                break
            time.sleep(0.25)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < BODY_TIMEOUT + 4


def test_a_body_sent_in_time_is_read_and_answered(server: Server) -> None:
    with connect(server) as sock:
        body = FILE_PART + b"x" * 100 + b"\r\n--xyz--\r\n"
        head = SELFIE_HEAD.replace(b"200000", str(len(body)).encode())
        sock.sendall(head)
        time.sleep(BODY_TIMEOUT / 2)  # slow, but inside the deadline
        sock.sendall(body)
        sock.settimeout(10)
        answer = sock.recv(4096)
    # Refused by the route (no consent, not a face), not by the deadline.
    assert answer.startswith(b"HTTP/1.1 4") and not answer.startswith(b"HTTP/1.1 408"), answer


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(10)
        answer = b""
        while not answer.endswith(b"}"):  # the head and the JSON body, maybe in two reads
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert read_until_closed(sock, 15) == b""
        assert time.monotonic() - started < 8, "uvicorn's keep-alive timeout is 5 s"
