"""A real `photoctl serve` subprocess on a free port, and an HTTP client for it."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.cli import ForkedCommand, photoctl_env, start_photoctl


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    url: str
    process: ForkedCommand
    env: dict

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start_server(tmp_path: Path, db_url: str, *args: str, **env_extra: str) -> Server:
    port = free_port()
    env = photoctl_env(tmp_path, db_url, **env_extra)
    return launch_server(env, tmp_path / f"serve-{port}.log", "--port", str(port), *args)


def launch_server(
    env: dict[str, str], log_path: Path, *args: str, cwd: Path | None = None
) -> Server:
    """`photoctl serve ARGS` with this environment, once /healthz answers; its output to log_path.

    Without --port among ARGS a free port is chosen.
    """
    if "--port" not in args:
        args = ("--port", str(free_port()), *args)
    port = args[args.index("--port") + 1]
    process = start_photoctl(["serve", *args], env, log_path, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, process, env)
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(log_path.read_text())
        time.sleep(0.1)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
