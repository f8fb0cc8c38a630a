"""What a deletion leaves in a SQLite write-ahead log, and the checkpoint that removes it.

``secure_delete`` zeroes a deleted row in the database file, but in WAL mode every earlier
version of its page (the insert of an embedding, a cached gallery grid) stays as a frame of the
``-wal`` file: a passive checkpoint copies frames into the database without erasing them, and
the file is reused from its start without being shortened. After face data is deleted,
``truncate`` copies the WAL into the database (whose pages now hold the zeroed rows) and cuts
the WAL to zero bytes, so no earlier version is left in any file. ``WAL_SIZE_LIMIT_BYTES`` (the
``journal_size_limit`` pragma) bounds what an ordinary reset leaves in the file between two.

A truncating checkpoint needs the write lock and then every reader off the WAL. It runs only
after an erasure, a user's deletion or a purge, never on a request's hot path, and it waits for
the lock in short turns (``_TURN_SECONDS``) so that writers get through between them: holding
the write lock while it waits for a reader would otherwise stall every worker.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

# A little more than the WAL an automatic checkpoint (1000 pages of 4 KiB) lets grow.
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
# photoctl's own readers take milliseconds; a backup or a shell left in a transaction may not.
PATIENCE_SECONDS = 10.0
_TURN_SECONDS = 0.25
_PAUSE_SECONDS = 0.05


def truncate(path: str | Path, patience_seconds: float = PATIENCE_SECONDS) -> bool:
    """Checkpoint the WAL of the SQLite file at ``path`` into it and truncate the WAL to zero.

    True when done (or when there is no such file); False when readers kept the WAL busy for
    ``patience_seconds``: the deletion stands, the WAL keeps the old frames until the next
    truncation, or until the last connection closes (SQLite then checkpoints and removes it).
    """
    path = Path(path)
    if not path.is_file():
        return True
    try:
        done = _checkpoint(path, patience_seconds)
    except sqlite3.Error as error:
        # The deletion is committed: a failed clean-up must not report it as failed.
        log.warning("%s-wal may still hold deleted data: %s", path, error)
        return False
    if not done:
        log.warning(
            "%s-wal still holds deleted data: readers kept it busy for %.0f s; the next "
            "erasure or purge empties it, as does the last process closing the database",
            path,
            patience_seconds,
        )
    return done


def _checkpoint(path: Path, patience_seconds: float) -> bool:
    # mode=rw: never create a database here.
    uri = f"file:{quote(str(path.absolute()))}?mode=rw"
    connection = sqlite3.connect(uri, uri=True, timeout=_TURN_SECONDS, isolation_level=None)
    try:
        deadline = time.monotonic() + patience_seconds
        while True:
            try:
                busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
                busy = 1
            if not busy:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_PAUSE_SECONDS)
    finally:
        connection.close()
