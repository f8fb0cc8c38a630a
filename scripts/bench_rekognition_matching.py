"""Benchmark the SearchFaces calls a photo costs with Rekognition, by event size (issue 11, item 5).

photoctl matches a new photo either with one SearchFaces per new face, or with one SearchFaces
per enrolled selfie of the event (a sweep), whichever is fewer calls
(photoctl/faces/rekognition_matching.py). For events of 10, 100 and 1,000 participants (one
selfie each) and photos of 1, 3, 10 and 30 faces this prints the calls per photo of each way and
of the choice, measured at the test suite's fake endpoint (testkit/fake_rekognition.py, real
boto3, requests counted where AWS would count them), checks that both ways found the same
matches where both were run (the sweep is only run when it is at most --max-sweep calls), and
prints the average over a photo mix (--mix, faces:share).

    .venv/bin/python scripts/bench_rekognition_matching.py
    .venv/bin/python scripts/bench_rekognition_matching.py --participants 10 100 --mix 1:0.5,4:0.5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from photoctl.faces import rekognition_matching  # noqa: E402
from photoctl.faces.base import EnrolledFace, StoredFace  # noqa: E402
from photoctl.faces.rekognition_matching import match_photo_faces, searches_for  # noqa: E402
from testkit.fake_rekognition import AWS_ENV, FakeRekognition, make_face_image  # noqa: E402

# Identities of the fake endpoint: colours on its 6-level grid, far from white.
IDENTITIES = [
    (r, g, b)
    for r in range(0, 256, 51)
    for g in range(0, 256, 51)
    for b in range(0, 256, 51)
    if r + g + b <= 561
]
FACES = (1, 3, 10, 30)
THRESHOLD = 90.0


def client_for(fake: FakeRekognition) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=fake.endpoint_url,
        region_name=AWS_ENV["AWS_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def index(client: Any, collection: str, image: bytes, external_id: str, max_faces: int) -> list:
    answer = client.index_faces(
        CollectionId=collection,
        Image={"Bytes": image},
        ExternalImageId=external_id,
        MaxFaces=max_faces,
        QualityFilter="AUTO",
    )
    return [record["Face"]["FaceId"] for record in answer["FaceRecords"]]


def measure(participants: int, max_sweep: int) -> list[dict[str, Any]]:
    rows = []
    with FakeRekognition() as fake:
        client = client_for(fake)
        collection = f"bench-{participants}"
        client.create_collection(CollectionId=collection)
        selfie_images: dict[int, bytes] = {}
        enrolled = []
        for user in range(participants):
            colour = IDENTITIES[user % len(IDENTITIES)]
            image = selfie_images.setdefault(
                user % len(IDENTITIES), make_face_image([colour], (160, 160))
            )
            [face_id] = index(client, collection, image, f"user-{user}", 1)
            enrolled.append(EnrolledFace(user, None, face_id))

        def call(operation: str, *, tolerate: frozenset[str] = frozenset(), **params: Any):
            return getattr(client, operation)(**params)

        for photo, faces in enumerate(FACES):
            image = make_face_image(IDENTITIES[:faces], (1600, 1000))
            face_ids = index(client, collection, image, str(photo), 100)
            stored = [StoredFace(i, photo, None, fid) for i, fid in enumerate(face_ids)]
            found: dict[str, list] = {}
            counts: dict[str, int] = {}
            for way in ("chosen", "by_face", "sweep"):
                expected = {"by_face": len(stored), "sweep": participants}.get(way)
                if way == "sweep" and participants > max_sweep:
                    counts[way] = participants  # one call per selfie: not run
                    continue
                forced = (lambda n, e, way=way: (way, 0)) if way != "chosen" else searches_for
                original = rekognition_matching.searches_for
                rekognition_matching.searches_for = forced
                try:
                    before = len(fake.calls("SearchFaces"))
                    found[way] = match_photo_faces(call, collection, THRESHOLD, stored, enrolled)
                    counts[way] = len(fake.calls("SearchFaces")) - before
                finally:
                    rekognition_matching.searches_for = original
                if expected is not None and counts[way] != expected:
                    raise SystemExit(f"{way}: {counts[way]} calls, expected {expected}")
            same = len({frozenset(m) for m in found.values()}) == 1
            rows.append(
                {"participants": participants, "faces": len(stored), **counts, "same": same}
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument(
        "--max-sweep", type=int, default=100, help="run forced sweeps up to this many calls"
    )
    parser.add_argument(
        "--mix",
        default="1:0.4,3:0.3,10:0.2,30:0.1",
        help="faces per photo and their share of an event's photos (for the average)",
    )
    args = parser.parse_args()
    mix = {int(k): float(v) for k, v in (part.split(":") for part in args.mix.split(","))}
    started = time.perf_counter()
    print("SearchFaces calls per photo (IndexFaces adds 1 in every case)")
    print(f"{'participants':>12} {'faces':>5} {'by face':>8} {'sweep':>6} {'chosen':>7}  same")
    for participants in args.participants:
        for row in measure(participants, args.max_sweep):
            same = "yes" if row["same"] else "NO"
            sweep_ran = participants <= args.max_sweep
            print(
                f"{participants:>12} {row['faces']:>5} {row['by_face']:>8} "
                f"{row['sweep']:>6}{'' if sweep_ran else '*'} {row['chosen']:>7}  "
                f"{same if sweep_ran else 'by face = chosen'}"
            )
        by_face = sum(faces * share for faces, share in mix.items())
        chosen = sum(searches_for(faces, participants)[1] * share for faces, share in mix.items())
        print(
            f"{participants:>12}  mix {args.mix}: by face {by_face:.1f}, chosen {chosen:.1f} "
            f"SearchFaces a photo ({1 + chosen:.1f} calls with IndexFaces)"
        )
    print(f"(* not run: one call per selfie; {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
