"""What every request of one serve process shares: built once, in the app's lifespan.

``open_services(settings)`` opens them and closes them again: the database engine (schema
checked), the response cache, the request rate limits, the bound on concurrent image decodes and
the face engine. Routes reach them through ``deps.Svc``; the body guard middleware reads them from
``app.state.services`` before any route runs.

This module imports nothing from ``app.py`` or the routes, so ``deps.py`` and every route can
import ``Services`` from here while ``app.py`` imports the routes at the top of the module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from photoctl import db, faces, participants
from photoctl.api.processing_figures import ProcessingFigures
from photoctl.cache import ResponseCache
from photoctl.config import Settings
from photoctl.decode_memory import DecodeBudget
from photoctl.errors import ConfigError
from photoctl.faces.base import FaceEngine
from photoctl.ratelimit import RequestLimits

log = logging.getLogger(__name__)


@dataclass
class Services:
    """One per serve process, shared by its request threads."""

    settings: Settings
    database: Engine
    cache: ResponseCache
    limits: RequestLimits
    # Image decodes at once in this process (selfies), so their memory stays bounded.
    decodes: DecodeBudget
    # The engine that enrolls selfies; None when faces.engine = none or it could not be built.
    face_engine: FaceEngine | None = None
    # Why face_engine could not be built (a missing region or boto3): selfies answer 503 with it.
    face_engine_error: ConfigError | None = None
    # Photos of each event still processing, counted off the request path (galleries).
    processing: ProcessingFigures | None = None


def _build_face_engine(
    settings: Settings, database: Engine
) -> tuple[FaceEngine | None, ConfigError | None]:
    # A configuration problem does not stop serve: everything but selfies works without faces,
    # and the selfie route tells the caller why it cannot enroll.
    try:
        return faces.make_engine(settings.faces.engine, settings, database), None
    except ConfigError as error:
        log.debug("face engine %s unavailable: %s", settings.faces.engine, error)
        return None, error


@contextmanager
def open_services(settings: Settings) -> Iterator[Services]:
    """The services of one serve process; the cache and database are closed on exit.

    The face engine is built here, once: a Rekognition engine holds a boto3 client (with its
    connection pool) and a call limiter, which are meant to live as long as the process. Engines
    load their models lazily, so building one costs no start-up time.
    """
    database = db.make_engine(settings)
    try:
        db.ensure_schema(database)
        cache = ResponseCache(settings, db.database_id(database))
        try:
            limits = RequestLimits(
                str(settings.cache_dir / "ratelimit"),
                settings.serve.upload_rate,
                settings.serve.login_rate,
                settings.serve.selfie_rate,
                enroll_address_rate=settings.serve.enroll_rate_per_address,
                enroll_event_rate=settings.serve.enroll_rate_per_event,
                bib_address_rate=settings.serve.bib_search_rate_per_address,
                bib_event_rate=settings.serve.bib_search_rate_per_event,
            )
            face_engine, face_engine_error = _build_face_engine(settings, database)
            yield Services(
                settings=settings,
                database=database,
                cache=cache,
                limits=limits,
                decodes=DecodeBudget(
                    settings.serve.max_concurrent_decodes,
                    4 * settings.serve.max_decode_pixels * settings.serve.max_concurrent_decodes,
                ),
                face_engine=face_engine,
                face_engine_error=face_engine_error,
                processing=ProcessingFigures(
                    lambda event_id: participants.processing_count(database, event_id)
                ),
            )
        finally:
            cache.close()
    finally:
        database.dispose()
