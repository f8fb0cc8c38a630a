"""Matching a photo's new faces with Rekognition in the fewest billed calls (issue 11, item 5).

Two ways find the same pairs, because a search in a collection is symmetric (face A is found
from B at the similarity B is found from A, above the same threshold):

- **by face**: one SearchFaces per new face of the photo, keeping the selfies it finds;
- **sweep**: one SearchFaces per enrolled selfie of the event, keeping the faces of this photo
  it finds.

Each photo takes whichever is fewer calls: ``min(new faces, enrolled selfies)``. A crowd photo
(30 faces) of an event with 5 participants costs 5 calls instead of 30; a portrait (1 face) of an
event with 1,000 participants costs 1. Nobody enrolled, or no face: no call at all. A
participant with two selfies counts twice (each selfie is searched). Both keep, per face and
participant, the best similarity over the participant's selfies.

Where they could differ: a search returns at most MaxFaces matches, the most similar first. A
search by face asks for 100, and a face with more than 100 look-alikes in the collection (other
photos of the same person count) may miss a selfie; a sweep asks for 4,096 (the API's most) and
keeps only this photo's faces, so it is the more complete of the two. A participant found in
more than 4,096 faces of the event would be cut short by a sweep: then every face is searched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from photoctl.faces.base import EnrolledFace, FaceMatch, StoredFace

SEARCH_BY_FACE_MAX = 100
SWEEP_MAX = 4096

Search = Callable[..., dict[str, Any]]  # RekognitionEngine._call bound to "search_faces" use


def searches_for(new_faces: int, enrolled: int) -> tuple[str, int]:
    """("none" | "by_face" | "sweep", SearchFaces calls) for one photo of an event."""
    if new_faces == 0 or enrolled == 0:
        return "none", 0
    if enrolled < new_faces:
        return "sweep", enrolled
    return "by_face", new_faces


def match_photo_faces(
    call: Search,
    collection_id: str,
    threshold: float,
    faces: Sequence[StoredFace],
    enrolled: Sequence[EnrolledFace],
) -> list[FaceMatch]:
    """The matches of a photo's new faces with the event's enrolled selfies, in the fewest calls."""
    selfie_users = {e.external_id: e.user_id for e in enrolled if e.external_id}
    return match_photo_faces_to(call, collection_id, threshold, faces, selfie_users)


def match_photo_faces_to(
    call: Search,
    collection_id: str,
    threshold: float,
    faces: Sequence[StoredFace],
    selfie_users: Mapping[str, int],
) -> list[FaceMatch]:
    """match_photo_faces with the event's selfies given as FaceId -> user id (a worker's
    faces.vector_cache holds it): a sweep copies it only when it has fewer entries than the
    photo has faces, so no per-photo work grows with the participants."""
    face_ids = {face.external_id: face.id for face in faces if face.external_id}
    way, _ = searches_for(len(face_ids), len(selfie_users))
    best: dict[tuple[int, int], float] = {}  # (face id, user id): best similarity

    def keep(face_id: int, user_id: int, similarity: float) -> None:
        best[(face_id, user_id)] = max(best.get((face_id, user_id), 0.0), similarity)

    def search(face_id: str, max_faces: int) -> list[dict[str, Any]]:
        # A selfie deleted since the event's selfies were read (its participant erased their
        # face data) is "not found" (InvalidParameterException): it finds nothing, as it should.
        sweeping = face_id in selfie_users
        answer = call(
            "search_faces",
            tolerate=frozenset({"InvalidParameterException"}) if sweeping else frozenset(),
            CollectionId=collection_id,
            FaceId=face_id,
            FaceMatchThreshold=threshold,
            MaxFaces=max_faces,
        )
        return list(answer.get("FaceMatches", []))

    if way == "sweep":
        for selfie_id, user_id in list(selfie_users.items()):
            found = search(selfie_id, SWEEP_MAX)
            if len(found) >= SWEEP_MAX:  # cut short: this sweep may miss faces of the photo
                return match_photo_faces_by_face(search, faces, selfie_users)
            for match in found:
                face_id = face_ids.get(match["Face"]["FaceId"])
                if face_id is not None:
                    keep(face_id, user_id, float(match["Similarity"]))
    elif way == "by_face":
        return match_photo_faces_by_face(search, faces, selfie_users)
    return _as_matches(best)


def match_photo_faces_by_face(
    search: Callable[[str, int], list[dict[str, Any]]],
    faces: Sequence[StoredFace],
    selfie_users: Mapping[str, int],
) -> list[FaceMatch]:
    best: dict[tuple[int, int], float] = {}
    for face in faces:
        if not face.external_id:
            continue
        for match in search(face.external_id, SEARCH_BY_FACE_MAX):
            user_id = selfie_users.get(match["Face"]["FaceId"])
            if user_id is not None:
                key = (face.id, user_id)
                best[key] = max(best.get(key, 0.0), float(match["Similarity"]))
    return _as_matches(best)


def _as_matches(best: dict[tuple[int, int], float]) -> list[FaceMatch]:
    return [
        FaceMatch(face_id, user_id, round(similarity, 2))
        for (face_id, user_id), similarity in sorted(best.items())
    ]
