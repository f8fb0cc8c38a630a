"""A zip archive written as it is sent: "download all" without building it in memory or on disk.

``zipfile`` writes to any object with ``write`` and, finding it cannot seek, puts each member's
sizes and CRC in a data descriptor after its bytes, so the archive can go out chunk by chunk.
Members are stored, not deflated: photos are compressed already, and stored members cost no
CPU. At most one member file is open and one chunk (256 KiB) held at a time, whatever the
archive's size; members past 4 GiB or 65,535 of them get zip64 records (``allowZip64``).
No dependency for it: the standard library does it in a few lines.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable, Iterator

from photoctl.api.download_names import displayable
from photoctl.api.files import Served

_MAX_NAME_CHARS = 200


class _Pipe:
    """The archive's output: what zipfile wrote since the last ``take``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def member_name(photo_id: int, filename: str) -> str:
    """A flat, unique name: the photo id first (two events may both have IMG_0001.JPG).

    Without controls or bidi characters (download_names.displayable), which could make a
    member's name read as another one's extension."""
    cleaned = "".join("_" if char in "/\\" else char for char in displayable(filename)).strip(" .")
    return f"{photo_id:06d}-{cleaned[:_MAX_NAME_CHARS] or 'photo'}"


def zip_chunks(members: Iterable[tuple[str, Served]]) -> Iterator[bytes]:
    """The archive of ``members`` (name, opened file), chunk by chunk.

    ``members`` is consumed lazily: each file is opened only when its turn comes.
    """
    pipe = _Pipe()
    now = time.localtime()[:6]
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, served in members:
            info = zipfile.ZipInfo(name, date_time=now)
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = served.size  # zip64 headers up front when the member needs them
            with archive.open(info, "w") as member:
                for chunk in served.chunks():
                    member.write(chunk)
                    yield pipe.take()
    # The central directory, written when the archive closed.
    yield pipe.take()
