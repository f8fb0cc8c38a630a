"""Behind a reverse proxy, rate limits count by the address the proxy saw, and only then.

A real `photoctl serve`, reached from 127.0.0.1 like a proxy on the same machine. Logins are
limited per client address (``serve.login_rate``): with the proxy trusted (the default,
``serve.trusted_proxies = 127.0.0.1,::1``) two participants behind it, told apart by
X-Forwarded-For, have a limit each; with no proxy trusted the header is a client's say-so and
is ignored, so everyone behind the proxy shares one limit, and a client cannot dodge its limit by
sending the header itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.serve import Server, start_server, stop_server

LOGIN_RATE = "2/minute"


@pytest.fixture(params=["trusted", "not trusted"])
def server(request, tmp_path: Path, db_url: str) -> Iterator[tuple[Server, bool]]:
    trusted = request.param == "trusted"
    env = {"PHOTOCTL_SERVE_LOGIN_RATE": LOGIN_RATE}
    if not trusted:
        env["PHOTOCTL_SERVE_TRUSTED_PROXIES"] = ""
    server = start_server(tmp_path, db_url, **env)
    yield server, trusted
    stop_server(server)


def login(server: Server, name: str, forwarded_for: str) -> int:
    response = httpx.post(
        f"{server.url}/api/login",
        json={"name": name, "password": "not it"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=30,
    )
    return response.status_code


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_login_limits_count_by_the_forwarded_address_only_from_a_trusted_proxy(
    server: tuple[Server, bool],
) -> None:
    serve, trusted = server
    # Different names each time: only the per-address limit can answer 429.
    first = [login(serve, f"nobody{i}", "203.0.113.7") for i in range(3)]
    other = login(serve, "nobody-else", "198.51.100.20")

    assert first == [401, 401, 429], "the third attempt from one address is over the limit"
    assert other == (401 if trusted else 429)
