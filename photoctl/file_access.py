"""Why this process cannot write where the SQLite database lives, in words an operator acts on.

SQLite's own answer to a read-only data dir is "unable to open database file" (or "attempt to
write a readonly database"), which names neither the file nor the reason. SQLite in WAL mode
writes the database file and, beside it, its -wal and -shm files, so both the file and its
directory must be writable by the user photoctl runs as. These functions only look (stat,
access, statvfs): db.py asks them after SQLite failed, so a setup that works is never refused
on a guess.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from pathlib import Path


def write_problem(database: Path) -> str | None:
    """Why the SQLite file ``database`` (or its directory) cannot be written, or None.

    A directory that does not exist yet is judged by the nearest one that does (where it would
    be created).
    """
    directory = database.parent
    existing = _nearest_existing(directory)
    if existing != directory:
        return None if _writable(existing) else f"cannot create {directory}: {_why(existing)}"
    if not _writable(directory):
        state, remedy = _why_not_writable(directory)
        return (
            f"the database's directory {directory} {state}, and SQLite writes the database and "
            f"its -wal and -shm files there: {remedy}"
        )
    if database.exists() and not os.access(database, os.R_OK | os.W_OK):
        return f"the database file {_why(database)}"
    return None


def denied(error: OSError) -> str | None:
    """An operator's sentence for a file or directory this user may not read or write (its
    permissions, a read-only file system), or None for any other error."""
    if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not error.filename:
        return None
    path = Path(os.path.abspath(os.fsdecode(error.filename)))
    existing = _nearest_existing(path)
    if existing != path:
        return None if _writable(existing) else f"cannot create {path}: {_why(existing)}"
    if not os.access(path, os.R_OK):
        info = path.stat()
        uid = os.geteuid()
        return (
            f"cannot read {path}: it is {stat.filemode(info.st_mode)} "
            f"{_user(info.st_uid)}:{_group(info.st_gid)}, not readable by user {_user(uid)} "
            f"(uid {uid}): give that user read permission or run photoctl as its owner"
        )
    if not _writable(path):
        state, remedy = _why_not_writable(path)
        return f"cannot write {path}: it {state}: {remedy}"
    return None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(path: Path) -> bool:
    wanted = os.W_OK | (os.X_OK if path.is_dir() else os.R_OK)
    return os.access(path, wanted)


def _why(path: Path) -> str:
    state, remedy = _why_not_writable(path)
    return f"{path} {state}: {remedy}"


def _why_not_writable(path: Path) -> tuple[str, str]:
    """What is wrong (`is on a read-only file system`, `is not writable by user x (uid n): it is
    dr-xr-xr-x root:root`) and what to do."""
    if _read_only_mount(path):
        return "is on a read-only file system", "mount it read-write or use another --data-dir"
    info = path.stat()
    uid = os.geteuid()
    return (
        f"is not writable by user {_user(uid)} (uid {uid}): it is "
        f"{stat.filemode(info.st_mode)} {_user(info.st_uid)}:{_group(info.st_gid)}",
        "give that user write permission (chown or chmod) or run photoctl as its owner",
    )


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
