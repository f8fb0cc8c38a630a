"""Finding the image files below the folders ingest is given: the walk and its ignore rules.

Paths are bytes end to end, so names that are not valid UTF-8 are found like any other. The walk
follows directory symlinks (never in a loop), skips hidden names and names matching an ignore
glob (NAS housekeeping such as ``@eaDir``), and never yields a file workers could not open the
same way later: FIFOs, devices and symlinks to files are reported as errors instead. It reads no
file's content: hashing and registering are ingest.py's.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from photoctl.catalog import display_path
from photoctl.config import Settings
from photoctl.imaging import IMAGE_EXTENSIONS, file_kind

log = logging.getLogger(__name__)

_EXTENSIONS = frozenset(ext.encode() for ext in IMAGE_EXTENSIONS)
# (file as shown to the operator, why it was not ingested)
FileErrors = list[tuple[str, str]]


def ignore_matcher(globs: Sequence[str]) -> Callable[[bytes], bool]:
    """A test for one path component (a file or folder name) against shell globs.

    Case-insensitive, because NAS and Windows shares spell their housekeeping folders both
    ways ("$RECYCLE.BIN", "$Recycle.Bin"). Globs are compiled into one regular expression over
    bytes, so names that are not valid UTF-8 are matched like any other.
    """
    patterns = [os.fsencode(glob.strip()).lower() for glob in globs if glob.strip()]
    if not patterns:
        return lambda _name: False
    # fnmatch.translate works on str; latin-1 maps each byte to one character and back.
    regex = re.compile(
        b"|".join(
            fnmatch.translate(pattern.decode("latin-1")).encode("latin-1") for pattern in patterns
        )
    )
    return lambda name: regex.match(name.lower()) is not None


def ignore_globs(settings: Settings, extra: Sequence[str] = ()) -> list[str]:
    """The configured ignore globs (``ingest.ignore``, comma-separated) plus ``extra``."""
    return [glob.strip() for glob in settings.ingest.ignore.split(",") if glob.strip()] + [
        glob for glob in extra if glob.strip()
    ]


@dataclass(frozen=True)
class Candidate:
    """An image file the walk found, with the size and mtime it had then."""

    path: bytes
    size_bytes: int
    mtime_ns: int


def ingest_roots(roots: Sequence[str | bytes]) -> list[bytes]:
    """The resolved folders of the roots that exist (a file's own folder for a file)."""
    resolved = []
    for root in roots:
        path = os.fsencode(root)
        if os.path.isdir(path):
            resolved.append(os.path.realpath(path))
        elif os.path.isfile(path):
            resolved.append(os.path.dirname(os.path.realpath(path)))
    return resolved


def _has_image_extension(name: bytes) -> bool:
    dot = name.rfind(b".")
    return dot > 0 and name[dot:].lower() in _EXTENSIONS


def walk_images(
    roots: Sequence[str | bytes],
    errors: FileErrors,
    ignored: Callable[[bytes], bool] = lambda _name: False,
) -> Iterator[Candidate]:
    """Every image file below the roots (following directory symlinks, never in a loop).

    Below a root, a file or folder whose name is ``ignored`` is skipped with all it holds; a
    root given explicitly is always walked. What cannot be walked or read is added to
    ``errors``.
    """
    visited: set[tuple[int, int]] = set()
    for root in roots:
        # Absolute: workers and serve may run from any directory, on the paths stored here.
        root_bytes = os.path.abspath(os.fsencode(root))
        try:
            info = os.stat(root_bytes)
        except OSError as error:
            errors.append((display_path(root_bytes), read_error_reason(error)))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk_directory(root_bytes, info, visited, errors, ignored)
        elif stat.S_ISREG(info.st_mode):
            # Workers open photos without following a final symlink: register the file itself.
            path = os.path.realpath(root_bytes) if os.path.islink(root_bytes) else root_bytes
            yield Candidate(path, info.st_size, info.st_mtime_ns)
        else:
            errors.append((display_path(root_bytes), _not_regular(info.st_mode)))


def _walk_directory(
    directory: bytes,
    info: os.stat_result,
    visited: set[tuple[int, int]],
    errors: FileErrors,
    ignored: Callable[[bytes], bool],
) -> Iterator[Candidate]:
    stack = [(directory, info)]
    while stack:
        current, current_info = stack.pop()
        identity = (current_info.st_dev, current_info.st_ino)
        if identity in visited:
            log.debug("skipping %s: already visited (symlink loop or alias)", display_path(current))
            continue
        visited.add(identity)
        try:
            entries = sorted(os.scandir(current), key=lambda entry: entry.name)
        except OSError as error:
            errors.append((display_path(current), read_error_reason(error)))
            continue
        subdirectories = []
        for entry in entries:
            if entry.name.startswith(b"."):
                continue  # hidden files, including macOS "._IMG_0001.jpg" resource forks
            if ignored(entry.name):
                log.debug("ignoring %s", display_path(entry.path))
                continue
            try:
                entry_info = entry.stat()  # follows symlinks
            except OSError as error:
                if _has_image_extension(entry.name) or error.errno == errno.ELOOP:
                    errors.append((display_path(entry.path), read_error_reason(error)))
                continue
            if stat.S_ISDIR(entry_info.st_mode):
                subdirectories.append((entry.path, entry_info))
            elif _has_image_extension(entry.name):
                if not stat.S_ISREG(entry_info.st_mode):
                    # A FIFO would block whoever opens it; a device is not a photo.
                    errors.append((display_path(entry.path), _not_regular(entry_info.st_mode)))
                elif entry.is_symlink():
                    # Workers and serve read photos without following a final symlink (a photo
                    # replaced by a link to another file must not be read through it).
                    errors.append(
                        (display_path(entry.path), "a symbolic link to a file (not followed)")
                    )
                else:
                    yield Candidate(entry.path, entry_info.st_size, entry_info.st_mtime_ns)
        stack.extend(reversed(subdirectories))


def _not_regular(mode: int) -> str:
    return f"{file_kind(mode)}, not a regular file"


def read_error_reason(error: OSError) -> str:
    """Why a file could not be read, in the words the ingest report shows."""
    if error.strerror and "not a regular file" in error.strerror:
        return error.strerror  # open_regular: "a FIFO (named pipe), not a regular file"
    if error.errno == errno.ELOOP:
        return "symlink loop"
    if error.errno == errno.ENOENT:
        return "file is gone (dangling symlink or deleted)"
    if error.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read: {error.strerror or error}"
