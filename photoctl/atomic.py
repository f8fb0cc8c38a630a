"""Files that appear whole or not at all: written beside their place, then renamed into it.

Below imaging.py and storage.py (both write this way), so neither imports the other for it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast


class _CountedWrites(io.BufferedIOBase):
    """A write-only stream that counts what it is given and writes it through Python's checked
    file writes (a short write is retried, a failed one raises).

    It has no usable ``fileno()`` on purpose: Pillow's encoder writes straight to a file
    descriptor when it gets one and ignores a short write there (ImageFile._save's
    encode_to_file), which on a full disk published a truncated JPEG.
    """

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        written = self._stream.write(data)
        self.count += written
        return written

    def flush(self) -> None:
        # Also called when this wrapper is collected, possibly after the file was closed.
        if not self._stream.closed:
            self._stream.flush()

    def tell(self) -> int:
        return self.count


@contextlib.contextmanager
def atomic_write(destination: Path) -> Iterator[BinaryIO]:
    """A stream whose content replaces ``destination`` only when the block ends without error.

    The temporary file sits beside the destination so the final ``os.replace`` is a rename on
    one file system; on any error it is removed and the destination is left as it was. Before
    the rename the file is flushed and synced and its size compared with what was written to
    the stream: a file shorter than that (a write lost on a full disk) is never published, and
    raises OSError(ENOSPC). OSError from creating the directory or the file, or from a write,
    propagates (callers map a full disk).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            counted = _CountedWrites(stream)
            yield cast(BinaryIO, counted)
            stream.flush()
            # A file system that reserves space late (NFS, some quotas) reports it here.
            os.fsync(stream.fileno())
            on_disk = os.fstat(stream.fileno()).st_size
        if on_disk != counted.count:
            raise OSError(
                errno.ENOSPC,
                f"only {on_disk:,} of {counted.count:,} bytes reached the disk",
                str(destination),
            )
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
