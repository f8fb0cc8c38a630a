"""The real CLI in a process of its own, with an environment that holds only what the test sets.

``run_photoctl`` is ``python -m photoctl ARGS`` as a shell or cron would run it, without paying
for a new interpreter and its imports (about half a CPU-second each, hundreds of times a run):
the command runs in a child forked from a multiprocessing forkserver that has imported photoctl
once. The child is a process of its own with exactly the test's environment, working directory,
stdin (/dev/null), stdout and stderr, runs ``photoctl.cli.main`` and exits with its code, so what
the test sees (exit code, output, files, the database) is what the command does. Tests about
the interpreter itself (starting under ``env -i``, importing on its own) pass
``fresh_interpreter=True`` and get a real ``subprocess.run``.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from photoctl.config import HISTORIC_ENV_NAMES

COMMAND = [sys.executable, "-m", "photoctl"]

# Imported once in the forkserver; every command's child starts with them loaded (serve's too),
# the local engine's dlib models included, as workers get them from photoctl's own forkserver:
# each `users enroll` or served selfie would otherwise load them again (0.9 CPU-s).
_PRELOAD = [
    "photoctl.cli",
    "photoctl.api.app",
    "photoctl.api.serve",
    "photoctl.faces.local_preload",
    "tests.support.cli",
]
_forkserver: multiprocessing.context.ForkServerContext | None = None
# A forkserver child's exit code is read once from a pipe, by whichever thread asks first, and
# Process.start() asks for every finished child (multiprocessing's cleanup of its children): two
# threads asking at once (a test running commands from a thread pool) could both read, the
# loser seeing end-of-file, which multiprocessing reports as exit code 255. One lock for both.
_POLLING = threading.Lock()


def is_photoctl_variable(name: str) -> bool:
    """PHOTOCTL_* and the historic names photoctl still reads (config.py): a developer's shell
    must not leak either into a test."""
    return name.startswith("PHOTOCTL_") or name in HISTORIC_ENV_NAMES


def photoctl_env(tmp_path: Path, db_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a photoctl subprocess: its own data dir and database."""
    env = {k: v for k, v in os.environ.items() if not is_photoctl_variable(k)}
    env["PHOTOCTL_DATA_DIR"] = str(tmp_path / "data")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if db_url:
        env["PHOTOCTL_DATABASE_URL"] = db_url
    env.update(extra)
    return env


def run_photoctl(
    args: list[str],
    env: dict[str, str],
    timeout: float = 120,
    cwd: Path | None = None,
    *,
    fresh_interpreter: bool = False,
) -> subprocess.CompletedProcess:
    """Run the real CLI in a process of its own and capture what it prints."""
    command = [*COMMAND, *args]
    if fresh_interpreter:
        return subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    with tempfile.TemporaryDirectory(prefix="photoctl-cli-") as scratch:
        stdout, stderr = Path(scratch, "stdout"), Path(scratch, "stderr")
        child = start_photoctl(args, env, stdout, stderr, cwd=cwd)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise subprocess.TimeoutExpired(
                command, timeout, _read(stdout), _read(stderr)
            ) from None
        return subprocess.CompletedProcess(command, child.returncode, _read(stdout), _read(stderr))


class ForkedCommand:
    """A running ``photoctl ARGS`` started by ``start_photoctl``: the part of Popen tests use."""

    def __init__(self, args: list[str], process: multiprocessing.process.BaseProcess) -> None:
        self.args = [*COMMAND, *args]
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        # Reading the exit code consumes it from the forkserver's status pipe; see _POLLING.
        with _POLLING:
            return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            # Readable once the child has exited; waiting does not consume the exit code.
            multiprocessing.connection.wait([self._process.sentinel], left)
        return code

    def send_signal(self, signal_number: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal_number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_photoctl(
    args: list[str],
    env: dict[str, str],
    stdout: Path,
    stderr: Path | None = None,
    *,
    cwd: Path | None = None,
    new_session: bool = False,
) -> ForkedCommand:
    """Start ``photoctl ARGS`` in a process of its own, its output written to files; without
    ``stderr`` both streams go to ``stdout``, in the order written. ``new_session`` makes it
    lead a session and process group of its own (os.killpg reaches its workers too)."""
    for path in (stdout, stderr):  # there to read at once, as with Popen and open files
        if path and path != Path(os.devnull):
            path.write_bytes(b"")
    process = _context().Process(
        target=_run_command,
        args=(
            list(args),
            dict(env),
            str(cwd) if cwd else None,
            str(stdout),
            str(stderr) if stderr else None,
            new_session,
        ),
        name="photoctl " + " ".join(args)[:60],
    )
    with _POLLING:
        process.start()
    return ForkedCommand(list(args), process)


def _context() -> multiprocessing.context.ForkServerContext:
    global _forkserver
    if _forkserver is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        _forkserver = context  # type: ignore[assignment]
    return _forkserver  # type: ignore[return-value]


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace") if path.exists() else ""


def _run_command(
    args: list[str],
    env: dict[str, str],
    cwd: str | None,
    stdout: str,
    stderr: str | None,
    new_session: bool = False,
) -> None:
    """In the forked child: become ``python -m photoctl ARGS``, run it, exit as it would."""
    import atexit

    import photoctl.cli

    if new_session:
        os.setsid()
    # As a shell would start it, whatever mask the forkserver was started with (one started by
    # photoctl's own supervisor in this test process blocks SIGINT and SIGTERM).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

    os.environ.clear()
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    writing = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    for path, fd, flags in ((os.devnull, 0, os.O_RDONLY), (stdout, 1, writing)):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    if stderr:
        opened = os.open(stderr, writing, 0o600)
        os.dup2(opened, 2)
        os.close(opened)
    else:
        os.dup2(1, 2)
    # Fresh text streams on descriptors 0-2, as a new interpreter would open them (multiprocessing
    # left sys.stdin on another descriptor, which uvicorn's worker processes cannot inherit).
    sys.stdin.close()
    sys.stdin = open(0, encoding=getattr(sys.__stdin__, "encoding", None), closefd=False)
    sys.stdout = _text_stream(1, sys.__stdout__, line_buffering=False)
    sys.stderr = _text_stream(2, sys.__stderr__, line_buffering=True)
    sys.argv = [str(Path(photoctl.cli.__file__).parent.parent / "__main__.py"), *args]
    try:
        photoctl.cli.main()
    finally:
        atexit._run_exitfuncs()  # what the interpreter runs at exit (logging.shutdown among them)


def _text_stream(fd: int, like: object, *, line_buffering: bool) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        io.FileIO(fd, "w", closefd=False),
        encoding=getattr(like, "encoding", None) or "utf-8",
        errors=getattr(like, "errors", None) or "strict",
        line_buffering=line_buffering,
    )
