"""What a worker process is given and what a `work` run reports: plain, picklable values.

Kept apart from worker.py (the loop itself) so the supervisor, which builds these for each child
it spawns, and the loop share them without the supervisor importing the loop's machinery.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from photoctl.config import Settings


@dataclass(frozen=True)
class WorkReport:
    """What a `work` run did: jobs done and failed, worker processes replaced."""

    done: int
    failed: int
    restarted: int


@dataclass(frozen=True)
class ChildSpec:
    """What a worker process needs, picklable: settings, who it is, and the shared values."""

    settings: Settings
    database_url: str
    index: int
    worker_id: str
    until_empty: bool
    engine_name: str
    verbosity: int
    stop: Any  # multiprocessing.Event
    done: Any  # multiprocessing.Value, jobs completed by every child together
    failed: Any
    budget: Any  # multiprocessing.Value: jobs left to claim under --max-jobs, -1 = unlimited
    storage_full: Any  # multiprocessing.Value: time claiming paused for lack of space, 0 = not
    supervisor_pid: int  # not the worker's parent: that is the forkserver (worker_processes.py)
    # The supervisor's environment when it started this child: a forked worker would otherwise
    # see its forkserver's, as of the first start.
    environ: dict[str, str]
    # Read end of a pipe only the supervisor writes to: end-of-file once it is gone. None when
    # the loop runs in the calling process (drain_in_process).
    supervisor_alive: Any


def new_worker_id(index: int) -> str:
    """A new id for child ``index``: this host and process, the index, a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{uuid.uuid4().hex[:8]}"


def supervisor_pid_of(worker_id: str) -> int | None:
    """The pid of the supervisor that started a worker, read from its id (new_worker_id)."""
    parts = worker_id.rsplit(":", 3)
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
