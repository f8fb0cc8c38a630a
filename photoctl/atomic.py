"""Files that appear whole or not at all: written beside their place, then renamed into it.

Below imaging.py and storage.py (both write this way), so neither imports the other for it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(destination: Path) -> Iterator[BinaryIO]:
    """A stream whose content replaces ``destination`` only when the block ends without error.

    The temporary file sits beside the destination so the final ``os.replace`` is a rename on
    one file system; on any error it is removed and the destination is left as it was. OSError
    from creating the directory or the file propagates (callers map a full disk).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
