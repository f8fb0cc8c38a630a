"""Who a client is, to serve: IPv6 clients count by their /64 for the per-address limits, and a
trailing-slash redirect points at a path, never at the Host header a client sent (issue 20,
item 11).

A real `photoctl serve` bound on ::1, reached from ::1 (a trusted proxy by default, so
X-Forwarded-For names the client, as behind nginx): 45 addresses of one /64 share one enrollment
counter, as one phone picking a new privacy address per request would; another /64 and an IPv4
client have counters of their own.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from photoctl.ratelimit import address_key
from tests.support.cli import photoctl_env, run_photoctl, start_photoctl
from tests.support.serve import Server, free_port, start_server, stop_server

SLUG = "city-run"
PER_ADDRESS = 3


def start_on_ipv6_loopback(env: dict[str, str], output: Path) -> Server:
    port = free_port()
    process = start_photoctl(["serve", "--host", "::1", "--port", str(port)], env, output)
    url = f"http://[::1]:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, process, env)
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, output.read_text()
        time.sleep(0.1)


@pytest.fixture
def ipv6_server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    env = photoctl_env(
        tmp_path,
        db_url,
        PHOTOCTL_SERVE_ENROLL_RATE_PER_ADDRESS=f"{PER_ADDRESS}/minute",
        PHOTOCTL_SERVE_ENROLL_RATE_PER_EVENT="1000/minute",
    )
    created = run_photoctl(["events", "create", SLUG, "--title", "City Run"], env)
    assert created.returncode == 0, created.stderr
    server = start_on_ipv6_loopback(env, tmp_path / "serve.log")
    yield server
    stop_server(server)


def enroll_from(client: httpx.Client, address: str) -> int:
    # No selfie: a request the limit lets through is refused by the route (422), not 429.
    answer = client.post(f"/api/e/{SLUG}", headers={"X-Forwarded-For": address})
    return answer.status_code


def test_ipv6_clients_share_one_enrollment_limit_per_64(ipv6_server: Server) -> None:
    with ipv6_server.client() as client:
        one_network = [enroll_from(client, f"2001:db8:1:2::{n:x}") for n in range(1, 46)]
        # Privacy addresses of the same /64 look nothing alike below it.
        one_network.append(enroll_from(client, "2001:db8:1:2:a1b2:c3d4:e5f6:789"))
        other_network = [enroll_from(client, f"2001:db8:1:3::{n:x}") for n in range(1, 3)]
        ipv4 = [enroll_from(client, f"192.0.2.{n}") for n in range(1, 3)]

    assert all(status != 429 for status in one_network[:PER_ADDRESS]), one_network
    assert one_network[PER_ADDRESS:] == [429] * (46 - PER_ADDRESS), "one /64 is one client"
    assert 429 not in other_network, "another /64 is another client"
    assert 429 not in ipv4, "IPv4 addresses still count one by one"


def test_address_keys() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff:1:2:3")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7" == address_key("192.0.2.7")
    assert address_key("192.0.2.7") != address_key("192.0.2.8")
    assert address_key("unknown") == "unknown"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_trailing_slash_redirect_is_relative_whatever_the_host_header(
    tmp_path: Path, db_url: str
) -> None:
    server = start_server(tmp_path, db_url)
    try:
        with server.client() as client:
            for path, target in (
                ("/healthz/", "/healthz"),
                ("/api/my-photos/?limit=3", "/api/my-photos?limit=3"),
                ("/api/g/some-token/", "/api/g/some-token"),
            ):
                answer = client.get(path, headers={"Host": "evil.example"})
                assert answer.status_code == 307, (path, answer.text)
                location = answer.headers["location"]
                assert location == target
                assert "evil.example" not in location
        # A path that starts with two slashes would be a host in a Location: never one.
        address = urlparse(server.url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(b"GET //evil.example/healthz/ HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            head = sock.recv(4096).split(b"\r\n\r\n")[0].lower()
        assert b"location: //" not in head and b"evil.example" not in head, head
    finally:
        stop_server(server)
