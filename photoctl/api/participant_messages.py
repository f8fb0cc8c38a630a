"""What a participant reads when the event page or their gallery refuses something.

A participant is a person with a phone, not an operator: every refusal they can see (on a
page, or in the JSON twin another front-end shows them) is a sentence saying what to do, never
the developer's text of the error (``decompression bomb refused (Image size ...)``, a
temporary file's name, an engine's reason). The mapping is by the kind of error (its exception
type and status), so a new wording inside imaging or an engine cannot leak through, and each
refusal names the form field it is about, so the page shows it next to that field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from fastapi import HTTPException

from photoctl.errors import FacesRefused, NoFace, PermanentError, SeveralFaces, TransientError
from photoctl.participants import MAX_BIBS

SELFIE = "selfie"
ACCESS_CODE = "access_code"
CONSENT = "consent"

NO_FACE = "We couldn't find a face in this photo. Try one facing the camera, in good light."
SEVERAL_FACES = (
    "We found more than one face of about the same size in this photo, so we can't tell which "
    "one is you. Take a selfie with only you in it, or with your face clearly the biggest."
)
UNUSABLE = (
    "We couldn't use this photo. Take a new selfie with your camera, or choose another photo "
    "(JPEG or PNG)."
)
TOO_LARGE = "This photo is too large to send. Take a new selfie, or choose a smaller photo."
NO_SELFIE = "Choose or take a selfie first."
NO_CONSENT = "Tick the box to agree to how your face is used: without it we cannot find you."
NO_CODE = "Type the access code printed on your badge or bib."
WRONG_CODE = "That access code is not right for this event. Check it on your badge or bib."
STALE_FORM = "This form has expired or came from another site. Reload the page and try again."
BUSY = "We're busy finding other people's photos. Please try again in a minute."
UNAVAILABLE = "Finding faces is not possible right now. Please try again later."


# A refused "add another selfie" goes back to the gallery (post/redirect/get) with one of these
# in its query: a short name, never free text a link could be made to show.
GALLERY_REFUSALS = {
    "no-face": NO_FACE,
    "several-faces": SEVERAL_FACES,
    "unusable": UNUSABLE,
    "too-large": TOO_LARGE,
    "no-selfie": NO_SELFIE,
    "busy": BUSY,
    "unavailable": UNAVAILABLE,
    "too-many": "You have sent several selfies in a short time. Please try again in a few minutes.",
    "stale": STALE_FORM,
}
BAD_BIB = "A bib number is the letters and digits printed on the bib (at most 16)."
NO_BIB_SEARCH = "This event's photos cannot be found by bib number."
MAX_BIBS_NOTE = (
    f"Your gallery holds at most {MAX_BIBS} bib numbers: remove one before adding another."
)
# A refused bib on the gallery goes back to it (post/redirect/get) with one of these names.
BIB_REFUSALS = {
    "bad": BAD_BIB,
    "too-many": MAX_BIBS_NOTE,
    "closed": NO_BIB_SEARCH,
    "busy": "You have looked up several bib numbers in a short time. Please try again later.",
    "stale": STALE_FORM,
}
_GALLERY_CODES = {message: code for code, message in GALLERY_REFUSALS.items()}


def gallery_refusal_code(refused: HTTPException) -> str | None:
    """The name of this refusal in GALLERY_REFUSALS (None: not one the gallery shows)."""
    if refused.status_code == 429:
        return "too-many"
    return _GALLERY_CODES.get(str(refused.detail))


class Refused(HTTPException):
    """A refusal for a participant: status, a sentence, and the form field it is about."""

    def __init__(
        self,
        status_code: int,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers=dict(headers) if headers else None)
        self.field = field


def selfie_refusal(error: HTTPException) -> Refused:
    """What a participant is told when their selfie is refused (api/selfies.py's answers).

    received_selfie turns the error it met into an HTTPException and keeps that error as its
    cause: the cause's type says what happened, the status what kind of answer it is.
    """
    if isinstance(error, Refused):
        return error
    cause = error.__cause__
    headers = error.headers
    if isinstance(cause, NoFace):
        return Refused(422, NO_FACE, SELFIE)
    if isinstance(cause, SeveralFaces):
        return Refused(422, SEVERAL_FACES, SELFIE)
    if isinstance(cause, FacesRefused | PermanentError) or error.status_code == 422:
        return Refused(422, UNUSABLE, SELFIE)
    if error.status_code == 413:
        return Refused(413, TOO_LARGE, SELFIE)
    if isinstance(cause, TransientError) or error.status_code == 503:
        busy = headers is not None and "Retry-After" in headers
        return Refused(503, BUSY if busy else UNAVAILABLE, None, headers)
    return Refused(error.status_code, str(error.detail), None, headers)


def retry_in_words(seconds: float) -> str:
    """'in about 3 minutes': how long a participant waits, rounded up to what they can use."""
    if seconds <= 60:
        whole = max(1, math.ceil(seconds))
        return f"in {whole} second{'s' if whole != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"in about {minutes} minute{'s' if minutes != 1 else ''}"


def too_many_enrollments(seconds: float) -> str:
    """The rate-limit page's sentence: what happened and when to try again."""
    return f"Too many people are signing up right now. Please try again {retry_in_words(seconds)}."


def too_many_selfies(seconds: float) -> str:
    when = retry_in_words(seconds)
    return f"You have sent several selfies in a short time. Please try again {when}."
