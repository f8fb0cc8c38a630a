"""Where `photoctl work`'s worker processes come from: forked from a server that has imported them.

A worker started as a fresh interpreter spent about 1.9 s of CPU before its first job (0.5 s
importing photoctl and SQLAlchemy, 0.45 s numpy, 0.9 s loading dlib's models), again for each of
`work -n N`'s children, each respawn after a crash and each run from cron. With multiprocessing's
forkserver that happens once per `photoctl work`: one fresh interpreter imports the worker loop
and the face engine's module (and, for `local`, loads the dlib models: read-only, so the workers
share their pages), and every worker is forked from it.

Nothing else crosses the fork: the server never opens a database connection, a boto3 client or
a thread of ours. What a spawned child got from its parent at each start and a forked one would
not, the supervisor hands over in the ChildSpec: the environment (the server keeps the one it
started with), so credentials or settings changed since still reach new workers.
The working directory and sys.path travel with multiprocessing's own preparation data. A
worker's parent is the server, not the supervisor, and the server lives on while workers do: a
worker learns that its supervisor is gone from a pipe only the supervisor writes to.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.context import ForkServerContext

from photoctl import processes
from photoctl.config import Settings
from photoctl.logs import setup_logging
from photoctl.worker import WorkerLoop
from photoctl.worker_spec import ChildSpec

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

# Imported by the server before any worker is forked, by face engine (`none`: nothing more).
_PRELOAD = {
    "local": ["photoctl.faces.local", "photoctl.faces.local_preload"],
    "rekognition": ["photoctl.faces.rekognition"],
}


def worker_context(settings: Settings) -> ForkServerContext:
    """The multiprocessing context workers start from, its server preloading what they use.

    That is the worker loop, the face engine's module and, with S3 storage, boto3's. The server
    is started by the first worker's start and lives as long as this process; the modules it
    preloads are fixed then (a later call with other settings still works: its workers import
    what is missing themselves).
    """
    preload = ["photoctl.worker_processes", *_PRELOAD.get(settings.faces.engine, [])]
    # The bib reader's libraries (OpenCV, onnxruntime: ~0.3 s of imports a worker); its model
    # is loaded by each worker's warm-up, since an onnxruntime session must not cross a fork.
    preload += ["photoctl.bibs.reader", "onnxruntime"]
    if settings.storage.is_s3:
        preload.append("photoctl.object_store")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    return context


def child_main(spec: ChildSpec) -> None:
    """A worker process: stop handlers that only set flags, then its loop.

    The supervisor starts it with SIGINT/SIGTERM blocked; they are unblocked only once the
    handlers are set, so a stop during start-up is seen, not fatal.
    """
    child: WorkerLoop | None = None
    stop_requested = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        if child is not None:
            child.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    os.environ.clear()
    os.environ.update(spec.environ)
    setup_logging(spec.settings, spec.verbosity)
    if spec.settings.queue.worker_nice:
        processes.lower_priority(spec.settings.queue.worker_nice, spec.supervisor_pid)
    child = WorkerLoop(spec)
    child.stopping = stop_requested
    child.run()
