"""The HTTP API (FastAPI): ``app.create_app(settings)``, run by uvicorn from `photoctl serve`.

Importing this package builds nothing and imports no route: ``create_app`` is looked up in
app.py on first use, so importing one part of the API (files.py, services.py) does not pull in
the whole application.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from photoctl.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
