"""Gallery tokens and bib numbers never reach a log line.

A gallery link's token is the only key to a participant's photos, and it travels in the path
(``/g/<token>/…``, ``/api/g/<token>/…``). Serve logs paths: uvicorn's access log (``serve -v``),
our own line about an unhandled error or an unreachable database, and uvicorn's traceback of an
exception. Anyone who can read a log (an operator, a log shipper, a backup) would otherwise hold
every link that was used. ``redact_serve_logs`` puts a filter on every handler serve's loggers
write through, which rewrites the path segment after ``/g/`` to ``***`` in the message, its
arguments and its traceback, whatever the handler (stderr, stdout, the shared file, JSON).
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "***"
# /g/<token> and /api/g/<token> where a path starts: after a space, a quote, "(", "=", the
# start of the text, or a scheme and host (a full URL). The token runs to the next "/", "?", "#",
# quote or space.
_GALLERY_PATH = re.compile(r"""(^|[\s"'(=]|://[^/\s"']*)(/(?:api/)?g/)[^/?#\s"']+""")
# uvicorn's loggers (their handlers are uvicorn's own, set up before the app is built).
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


# /e/<slug>/bibs/<number> and /api/g/<token>/bib/<number>: a bib searched is personal (whose
# photos were looked at), and the audit log keeps only counts; the number runs to the next "/",
# "?", "#", quote or space. The query of the event page's form (``?bib=``) goes the same way.
_BIB_PATH = re.compile(r"""(/(?:api/)?(?:e/[^/?#\s"']+/bibs|g/[^/?#\s"']+/bib)/)[^/?#\s"']+""")
_BIB_QUERY = re.compile(r"""([?&]bib=)[^&#\s"']*""")


def redact_paths(text: str) -> str:
    """``text`` with the token of every gallery path, and every bib number searched, in it
    replaced by ``***``."""
    text = _GALLERY_PATH.sub(rf"\1\2{REDACTED}", text)
    text = _BIB_PATH.sub(rf"\1{REDACTED}", text)
    return _BIB_QUERY.sub(rf"\1{REDACTED}", text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_paths(value)
    if isinstance(value, (int, float)) or value is None:
        return value  # numbers stay numbers, for %d
    shown = str(value)
    redacted = redact_paths(shown)
    return value if redacted == shown else redacted


class RedactGalleryTokens(logging.Filter):
    """Rewrites a record's message, arguments and traceback; never drops a record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_paths(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(value) for value in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_paths(record.exc_text)
            # Formatters that format exc_info themselves (python-json-logger's) read exc_text
            # only without it.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_paths(record.stack_info)
        return True


def redact_serve_logs() -> None:
    """Put the filter on every handler of this process's root and uvicorn loggers (once)."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in _UVICORN_LOGGERS)]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactGalleryTokens) for f in handler.filters):
                handler.addFilter(RedactGalleryTokens())
