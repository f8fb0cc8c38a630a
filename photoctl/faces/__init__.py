"""Face engines: the interface (base.py), local dlib (local_engine.py), AWS Rekognition.

``make_engine`` picks one by name; engine modules are imported only when chosen, so dlib and
boto3 load only in processes that use them.
"""

from __future__ import annotations

import importlib

from sqlalchemy import Engine

from photoctl.config import Settings
from photoctl.errors import ConfigError
from photoctl.faces.base import FaceEngine

# name -> "module:class"; `none` has no engine (thumbnails and metadata only).
ENGINES: dict[str, str | None] = {
    "local": "photoctl.faces.local_engine:LocalEngine",
    "rekognition": "photoctl.faces.rekognition:RekognitionEngine",
    "none": None,
}


def make_engine(
    name: str,
    settings: Settings,
    database: Engine | None = None,
    holder: str | None = None,
) -> FaceEngine | None:
    """The engine called ``name``, configured from settings; None for `none`.

    ``holder`` names this process in the shared call limiter (a worker passes its worker id,
    so its supervisor can free what it held if it dies).
    """
    if name not in ENGINES:
        raise ConfigError(f"unknown face engine {name!r} (known: {', '.join(ENGINES)})")
    target = ENGINES[name]
    if target is None:
        return None
    module_name, class_name = target.split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class.from_settings(settings, database, holder)
