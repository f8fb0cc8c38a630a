"""The project's exception tree: one base, and the few kinds callers act on differently.

Driver and library errors are translated into these at the boundary (db.py, imaging.py), so the
CLI and the worker decide what to do from the kind alone: a ConfigError is exit 2, a
PermanentError fails a job at once, a TransientError is retried with backoff.
"""

from __future__ import annotations


class PhotoctlError(Exception):
    """Base of every error photoctl raises on purpose."""


class ConfigError(PhotoctlError):
    """Bad configuration or usage: the operator must change something before trying again."""


class PermanentError(PhotoctlError):
    """Retrying cannot help: not an image, corrupt, too large, file gone."""


class TransientError(PhotoctlError):
    """May succeed later: database busy, network, throttling."""


class NotFound(PhotoctlError):
    """A named thing (job, photo, user) does not exist."""


class StorageFull(TransientError):
    """No space left (ENOSPC, EDQUOT, a full database): nothing a retry soon can fix.

    Workers stop claiming until space is back instead of spending a job's attempts on it, and
    serve answers 507. Not the job's fault, so it never counts against the job.
    """


class StoreUnavailable(StorageFull):
    """The object store (S3 storage) cannot be reached, answers too slowly, or fails on its side.

    Handled like a full disk, for the same reason: not the job's fault, and nothing a job's
    attempts should be spent on. Workers give their jobs back with the attempt refunded and stop
    claiming until the store answers again; serve answers 503.
    """


class DatabaseUnavailable(TransientError):
    """The database cannot be reached (down, refusing connections, connection lost).

    Workers wait and reconnect instead of failing jobs or dying; serve answers 503.
    """


class NoDatabase(ConfigError):
    """A command that only reads found no photoctl database (it never creates one)."""

    def __init__(self, location: str) -> None:
        super().__init__(
            f"no photoctl database at {location}; run `photoctl init` or `photoctl ingest` first"
        )
        self.location = location


class NoFace(PermanentError):
    """A selfie in which the face engine found no face."""


class FacesRefused(PermanentError):
    """The face service refused this photo (too small, a format or parameter it rejects).

    The photo itself is fine: it keeps its thumbnail and preview and its job completes, with its
    face step recorded as failed for this reason (photos.faces_error), instead of failing the
    job or retrying it. A selfie refused this way is simply a PermanentError to enrollment.
    """


class SeveralFaces(PermanentError):
    """A selfie shows more than one face and the caller did not ask for the largest."""

    def __init__(self, count: int, where: str = "") -> None:
        super().__init__(f"{where + ': ' if where else ''}{count} faces in the selfie")
        self.count = count
