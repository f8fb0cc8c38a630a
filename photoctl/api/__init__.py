"""The HTTP API (FastAPI): ``create_app(settings)``, run by uvicorn from `photoctl serve`."""

from photoctl.api.app import create_app

__all__ = ["create_app"]
