"""A selfie received by serve: stored, size-checked and decoded in turn, whoever sends it.

A selfie is the one image serve decodes itself, next to requests that must stay fast. Every route
that takes one (an API user's /api/me/selfie, a participant's enrollment and "add another
selfie") goes through ``received_selfie``: the upload is copied to a temporary file in chunks and
refused past ``serve.selfie_max_bytes`` (413), refused from its header when its decode would be
too large (the workers' pixel guard plus a bound on the decoded size, 422), and decoded by at most
``serve.max_concurrent_decodes`` requests at once in each process (503 after a wait). One place,
so a new selfie route cannot forget a guard.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import HTTPException, UploadFile

from photoctl.api.services import Services
from photoctl.decode_memory import give_back_freed_memory, slot_ends_after_decode
from photoctl.errors import PermanentError, TransientError
from photoctl.faces.base import FaceEngine
from photoctl.imaging import check_decode_size

_CHUNK_BYTES = 1024 * 1024


def face_engine(svc: Services) -> FaceEngine:
    """The engine that enrolls selfies; 503 saying why when there is none."""
    # Built once per process (services.open_services), with what went wrong if it could not be.
    if svc.face_engine_error is not None:
        raise HTTPException(503, f"face engine unavailable: {svc.face_engine_error}")
    if svc.face_engine is None:
        raise HTTPException(503, "no face engine is configured (faces.engine = none)")
    return svc.face_engine


@contextmanager
def received_selfie(svc: Services, upload: UploadFile) -> Iterator[tuple[FaceEngine, Path]]:
    """(engine, selfie file) inside a decode slot; the file is removed on exit.

    A PermanentError raised in the block (no face, not an image) becomes 422 and a
    TransientError 503, with the temporary file's name replaced by "selfie". Callers that want
    another answer for one kind catch it inside the block.
    """
    engine = face_engine(svc)
    limit = svc.settings.serve.selfie_max_bytes
    handle, temporary = tempfile.mkstemp(suffix=".selfie")
    try:
        with os.fdopen(handle, "wb") as out:
            # Copied in chunks: the selfie is never held in memory twice.
            shutil.copyfileobj(upload.file, out, _CHUNK_BYTES)
            if out.tell() > limit:
                raise HTTPException(413, f"selfie larger than {limit:,} bytes")
        cost = check_decode_size(
            Path(temporary),
            preview_px=svc.settings.storage.preview_px,
            max_pixels=svc.settings.ingest.max_pixels,
            max_decoded_pixels=svc.settings.serve.max_decode_pixels,
            display_name="selfie",
            detail_px=engine.detail_px,
        )
        decodes = svc.decodes
        if not decodes.acquire(cost, timeout=svc.settings.serve.decode_wait_seconds):
            raise HTTPException(
                503, "busy decoding other selfies, try again", headers={"Retry-After": "5"}
            )
        released = threading.Lock()

        def release_once() -> None:
            # Called after the decode (decode_memory.decoded) and again on exit: once counts.
            if released.acquire(blocking=False):
                decodes.release(cost)

        try:
            with slot_ends_after_decode(release_once):
                yield engine, Path(temporary)
        finally:
            release_once()
    except PermanentError as error:
        message = str(error).replace(temporary, "selfie")
        # The frames of the refused decode (users.enroll's) hold its images; the answer would
        # keep them alive through its exception's context until it is sent. The cause itself
        # stays: participant_messages.py tells a person what happened by its type.
        traceback.clear_frames(error.__traceback__)
        raise HTTPException(422, message) from error
    except TransientError as error:
        traceback.clear_frames(error.__traceback__)
        raise HTTPException(
            503, f"try again later: {error}", headers={"Retry-After": "5"}
        ) from error
    finally:
        Path(temporary).unlink(missing_ok=True)
        # A decode's buffers are freed by now: give the pages back rather than keep them.
        give_back_freed_memory()
