"""Imported by the workers' forkserver (worker_processes.py): the local engine's dlib models.

Loaded once there, before any worker is forked, every worker shares them (0.9 s of CPU and
about 100 MB each otherwise). Nothing here starts a thread: libfacedetection's OpenMP pool,
which must not cross a fork, is started by each worker's own warm-up.
"""

from __future__ import annotations

import contextlib

from photoctl.faces.local_model import LocalFaceModel

# A model that cannot load is not this server's to report: each worker's warm-up raises the
# same error again, with its reason, in the worker's log.
with contextlib.suppress(Exception):
    LocalFaceModel.shared()
