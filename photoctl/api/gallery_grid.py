"""The costly part of a participant's gallery, built once and cached: the grid of photos.

A gallery page (and its JSON twin) is a grid of up to 48 photos around a few small, live parts:
the event, whether the face data was deleted, how many photos are still processing, the form
token. Only the grid costs anything to build (48 tiles, four links each), and it changes only
when the participant's matches do; every such change drops the participant's cache entries by
their user tag: a worker that matches them, "not me", another selfie, erasure, the event's
purge. So the grid is cached, as HTML and as the JSON of its photos, per participant, page and
page size, and the live parts are read and rendered per request. (A participant whose face data
was deleted is never shown a grid, cached or not.)

The gallery token is stored only as a hash, so it is never written to the cache either: the
cached grid carries a mark where the token goes, replaced on the way out. The marks cannot come
from the data: autoescaped HTML never holds a raw ``<``, and the JSON of a photo is put together
here around json.dumps of each value, which writes every control character escaped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from photoctl import participants
from photoctl.api.pages import render_fragment
from photoctl.api.services import Services
from photoctl.cache import user_tag
from photoctl.gallery import PhotoItem

_HTML_MARK = "<gallery-token>"
_JSON_MARK = "\x01"


@dataclass(frozen=True)
class Grid:
    """One page of a participant's photos, token-free (see the module docstring)."""

    html: str  # the download-all link, the tiles and the pager
    photos_json: str  # a JSON array of GalleryOut.photos
    count: int
    next_cursor: int | None

    def page_html(self, token: str) -> Markup:
        return Markup(self.html.replace(_HTML_MARK, token))

    def json_photos(self, token: str) -> str:
        return self.photos_json.replace(_JSON_MARK, token)


def _photo_json(item: PhotoItem, json_base: str) -> str:
    base = f"{json_base}/photos/{item.id}"
    dumps = json.dumps
    # Why it is in a participant's gallery (bibs/lookup.GalleryItem); a plain item has no reason.
    found_by = getattr(item, "found_by", None)
    return (
        f'{{"id":{item.id},"filename":{dumps(item.filename)},"taken_at":{dumps(item.taken_at)},'
        f'"width":{dumps(item.width)},"height":{dumps(item.height)},"page_url":"{base}",'
        f'"thumb_url":"{base}/thumb","preview_url":"{base}/preview",'
        f'"original_url":"{base}/original","found_by":{dumps(found_by)}}}'
    )


def build(
    items: Sequence[PhotoItem],
    cursor: int | None,
    next_cursor: int | None,
    *,
    html_base: str = f"/g/{_HTML_MARK}",
    json_base: str = f"/g/{_JSON_MARK}",
) -> Grid:
    """The grid of these photos; its links start with ``html_base`` (HTML) and ``json_base``
    (JSON): a participant's gallery by default, with the token's marks, or a bib's result page.
    Nothing in either base is escaped: they are built from checked slugs, bibs and marks."""
    html = render_fragment(
        "gallery_grid.html",
        base=Markup(html_base),
        photos=items,
        cursor=cursor,
        next_cursor=next_cursor,
    )
    photos = "[" + ",".join(_photo_json(item, json_base) for item in items) + "]"
    return Grid(html, photos, len(items), next_cursor)


def grid(svc: Services, participant_id: int, limit: int, cursor: int | None) -> Grid:
    """The participant's page of photos, from the cache or built (and cached with their tag)."""

    def compute() -> Grid:
        items, next_cursor = participants.participant_photos(
            svc.database, participant_id, limit, cursor
        )
        return build(items, cursor, next_cursor)

    return svc.cache.get_or_compute(
        ("grid", participant_id, limit, cursor),
        svc.settings.cache.ttl_my_photos,
        compute,
        tag=user_tag(participant_id),
    )
