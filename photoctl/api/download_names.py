"""A photo's file name as a download: the Content-Disposition header and a zip member's name.

File names come from whoever put files in an ingest folder or uploaded them, so they may hold
anything a file system allows: letters outside Latin-1 (``Łódź.jpg``, which Starlette cannot put
in a header at all), quotes and angle brackets, and invisible characters that change how a name
is shown. Bidi controls (U+202E RIGHT-TO-LEFT OVERRIDE and its kin) make ``x<U+202E>gpj.exe`` read
as ``xexe.jpg``: those, and every other control or format character, are dropped from a name
before it is offered to a person.

The header follows RFC 6266: ``filename*=UTF-8''…`` with the name percent-encoded (RFC 8187),
which browsers use, and a plain ``filename="…"`` for older clients, ASCII only, with accents
reduced to their letter and quotes, backslashes, percent signs and anything else replaced by
``_``. The S3 presigned redirect asks the store to answer with the same header.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

# Characters RFC 8187's attr-char allows unencoded besides letters and digits.
_ATTR_CHARS = "!#$&+-.^_`|~"
# The fallback keeps printable ASCII except what would end or escape the quoted string, or be
# read as a percent-escape by clients that decode one there.
_FALLBACK_REFUSED = frozenset('"\\%')


def displayable(name: str) -> str:
    """``name`` without control, format (bidi and zero-width) or unpaired surrogate characters.

    Unpaired surrogates are what ``os.fsdecode`` makes of bytes that are not UTF-8: they become
    U+FFFD, as they would be shown.
    """
    kept = []
    for char in name:
        category = unicodedata.category(char)
        if category == "Cs":
            kept.append("\ufffd")
        elif category not in ("Cc", "Cf", "Zl", "Zp"):
            kept.append(char)
    return "".join(kept)


def ascii_fallback(name: str) -> str:
    """The name for clients that do not read ``filename*``: printable ASCII, never a quote."""
    decomposed = unicodedata.normalize("NFKD", name)
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    return "".join(
        "_" if not " " <= char <= "~" or char in _FALLBACK_REFUSED else char for char in letters
    )


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """The Content-Disposition value (ASCII only) offering ``filename`` for download."""
    name = displayable(filename).strip() or "download"
    encoded = quote(name.encode("utf-8"), safe=_ATTR_CHARS)
    return f"{disposition}; filename=\"{ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"
