"""A local fake of AWS Rekognition's face-collection API for tests and benchmarks.

``FakeRekognition`` is an HTTP server on 127.0.0.1 that speaks the ``awsJson1_1``
protocol (POST /, ``X-Amz-Target: RekognitionService.<Operation>``) well enough for a
real ``boto3.client("rekognition", endpoint_url=...)``: collections, IndexFaces,
SearchFaces, SearchFacesByImage, DeleteFaces, ListFaces and DetectText, with AWS-shaped errors
(HTTP 400, ``{"__type": ..., "message": ...}``, ``x-amzn-RequestId``).  Face
"recognition" needs no ML: a *face* is a solid, roughly square patch of one colour on a
mostly white image, and its identity is that colour after snapping every channel to the
nearest of the six levels 0, 51, 102, 153, 204, 255 (so JPEG noise of up to +-25 per
channel is harmless).  An image is only searched for faces when at least a quarter of it
is white; each non-white colour then counts as one face if its pixels fill at least 80 %
of their bounding box (taken from the rows/columns where the colour is dense, so stray
edge pixels do not count), the box is square within 0.7-1.4 and its side is at least
3 % of the image's shorter side (and 8 px).  Real photos therefore yield no faces.
``make_face_image`` draws such images; faces with the same snapped colour are the same
person and match with Similarity 99.5, different colours never match.  Test knobs
(``tps_quota``, ``latency_seconds``, ``throttle_next``, ``throttle_for``, ``fail_next``,
which can aim at one operation) and records
(``records``, ``max_in_flight``, ``calls``, ``max_calls_in_any_window``) let tests
assert on request rates and concurrency; times are ``time.monotonic()``, which is
system-wide on Linux and so comparable with other local processes.  The module also
runs as a process (``python testkit/fake_rekognition.py --port 0 --tps 5 --latency 0.15``
prints the endpoint URL as its first stdout line) and then also answers
DetectText reads nothing: it answers the text lines a test registered for an image
(``register_text``, e.g. with testkit/bibs.py's ground truth of a generated race photo), found
again by a 64-bit average hash of the image (8x8 grey, each cell above or below the mean), so
the copy photoctl re-encodes and scales down to send is recognised (up to 6 bits may differ);
any other image has no text.  ``GET /_fake/stats`` (``?records=0``: the counters without the
records), ``POST /_fake/config`` and ``POST /_fake/reset`` for harnesses that cannot reach the
object.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import io
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

# Credentials and region for a boto3 client of this fake: boto3 insists on some, and must never
# find real ones or ask the EC2 metadata address for an instance role.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Colours that stay distinct identities here (not white, not near-white): make_face_image
# paints one square face per colour.
PALETTE = [
    (r, g, b)
    for r in (0, 102, 204)
    for g in (0, 102, 204)
    for b in (0, 102, 204)
    if (r, g, b) != (204, 204, 204)
]
TARGET_PREFIX = "RekognitionService."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # AWS limit for Image.Bytes (after base64 decoding)
MIN_IMAGE_PX = 80  # AWS refuses images narrower or lower than this (InvalidParameterException)
FACE_MODEL_VERSION = "7.0"
ACCOUNT_ID = "123456789012"
SIMILARITY = 99.5
FACE_CONFIDENCE = 99.99
MAX_FACES_PER_IMAGE = 100  # IndexFaces only ever considers the 100 largest faces
DEFAULT_PAGE_SIZE = 1000

# Quantisation of colour channels: 6 levels, 51 apart, so identities survive JPEG noise.
LEVEL_STEP = 51
_LEVELS = 6
_WHITE_CODE = _LEVELS**3 - 1
MIN_WHITE_FRACTION = 0.25
MIN_FILL = 0.80
MIN_ASPECT, MAX_ASPECT = 0.7, 1.4
MIN_SIDE_FRACTION = 0.03
MIN_SIDE_PX = 8
# Pillow's point() table for an RGB image: per channel (red, green, blue) each 8-bit value's
# level times the channel's weight in the colour code (36, 6, 1).
_CODE_TABLE = [
    (value + LEVEL_STEP // 2) // LEVEL_STEP * weight
    for weight in (_LEVELS * _LEVELS, _LEVELS, 1)
    for value in range(256)
]
# Decoding huge photos at full size is wasted work: detection only needs a coarse view.
_ANALYSIS_MAX_SIDE = 1024

# Codes that mark a request as "throttled" in the records, whatever produced them.
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException"}
)
# AWS marks these as server faults; everything else is a client error (400).
_SERVER_ERROR_STATUS = {"InternalServerError": 500, "ServiceUnavailableException": 503}

Colour = tuple[int, int, int]


class RekognitionError(Exception):
    """An AWS-style error answer: ``code`` becomes ``__type`` in the body."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else _SERVER_ERROR_STATUS.get(code, 400)


class RequestRecord(NamedTuple):
    """One handled request; ``throttled`` is True for any throttling-type error answer."""

    start: float
    end: float
    operation: str
    throttled: bool


@dataclass(frozen=True)
class DetectedFace:
    """A face found in an image: its identity colour and its box as image ratios."""

    colour: Colour
    left: float
    top: float
    width: float
    height: float

    @property
    def area(self) -> float:
        return self.width * self.height

    def bounding_box(self) -> dict[str, float]:
        return {
            "Width": round(self.width, 6),
            "Height": round(self.height, 6),
            "Left": round(self.left, 6),
            "Top": round(self.top, 6),
        }


@dataclass
class _StoredFace:
    seq: int
    colour: Colour
    face: dict[str, Any]


@dataclass
class _Collection:
    collection_id: str
    created: float
    faces: dict[str, _StoredFace] = field(default_factory=dict)


# --------------------------------------------------------------------------- images


def snap_colour(colour: Sequence[int]) -> Colour:
    """Return the face identity of ``colour``: each channel snapped to a multiple of 51."""
    r, g, b = (min(255, max(0, int(c))) for c in colour[:3])
    return (
        (r + LEVEL_STEP // 2) // LEVEL_STEP * LEVEL_STEP,
        (g + LEVEL_STEP // 2) // LEVEL_STEP * LEVEL_STEP,
        (b + LEVEL_STEP // 2) // LEVEL_STEP * LEVEL_STEP,
    )


def make_face_image(
    colours: Sequence[tuple[int, int, int]],
    size: tuple[int, int] = (800, 600),
    *,
    sides: Sequence[int] | None = None,
    fmt: str = "JPEG",
    quality: int = 95,
) -> bytes:
    """Draw one solid square "face" per colour on a white canvas and encode it.

    Colours are snapped to the detection grid first (see ``snap_colour``) so that the
    drawn colour sits in the middle of its quantisation bin.  Squares are laid out in a
    grid in reading order; ``sides`` overrides each square's side in pixels (e.g. to make
    one face the largest for SearchFacesByImage).  JPEG uses 4:4:4 chroma so edges stay
    crisp, though detection also survives ordinary re-encoding.
    """
    snapped = [snap_colour(c) for c in colours]
    if any(c == (255, 255, 255) for c in snapped):
        raise ValueError("white is the background and cannot be a face colour")
    if len(set(snapped)) != len(snapped):
        raise ValueError(f"colours must be distinct after snapping: {snapped}")
    width, height = size
    img = Image.new("RGB", size, (255, 255, 255))
    n = len(snapped)
    if n:
        # Pick the column count that gives the largest square cells on this canvas.
        cols = max(range(1, n + 1), key=lambda c: min(width / c, height / math.ceil(n / c)))
        rows = math.ceil(n / cols)
        cell = min(width / cols, height / rows)
        default_side = int(cell * 0.6)
        draw = ImageDraw.Draw(img)
        for i, colour in enumerate(snapped):
            side = int(sides[i]) if sides is not None else default_side
            if side < max(MIN_SIDE_PX, MIN_SIDE_FRACTION * min(size)) * 1.5:
                raise ValueError(f"face square of {side}px is too small to detect reliably")
            if side > cell:
                raise ValueError(f"face square of {side}px does not fit its {cell:.0f}px cell")
            cx = (i % cols + 0.5) * (width / cols)
            cy = (i // cols + 0.5) * (height / rows)
            x0, y0 = int(cx - side / 2), int(cy - side / 2)
            draw.rectangle([x0, y0, x0 + side - 1, y0 + side - 1], fill=colour)
    out = io.BytesIO()
    if fmt.upper() == "JPEG":
        img.save(out, "JPEG", quality=quality, subsampling=0)
    else:
        img.save(out, fmt)
    return out.getvalue()


def _decode_image(data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        # Rekognition accepts only JPEG and PNG.
        if img.format not in ("JPEG", "PNG"):
            raise RekognitionError(
                "InvalidImageFormatException", "Request has invalid image format"
            )
        if min(img.size) < MIN_IMAGE_PX:
            raise RekognitionError("InvalidParameterException", "Request has invalid parameters")
        if img.format == "JPEG":
            # DCT-domain downscaling: fast, and it averages, so flat colours survive.
            img.draft("RGB", (_ANALYSIS_MAX_SIDE, _ANALYSIS_MAX_SIDE))
        img.load()
    except RekognitionError:
        raise
    except Exception as exc:  # Pillow raises many types for garbage input
        raise RekognitionError(
            "InvalidImageFormatException", "Request has invalid image format"
        ) from exc
    if img.mode != "RGB":
        img = img.convert("RGB")  # a copy: only when needed
    if max(img.size) > _ANALYSIS_MAX_SIDE * 2:
        scale = _ANALYSIS_MAX_SIDE / max(img.size)
        new_size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
        img = img.resize(new_size, Image.Resampling.NEAREST)
    return img


def average_hash(image: Image.Image) -> int:
    """64 bits: each cell of the image scaled to 8x8 grey, above its mean or not."""
    cells = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float32)
    bits = (cells > cells.mean()).flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def _dense_span(counts: np.ndarray) -> tuple[int, int] | None:
    """Longest run of indices where ``counts`` is at least half its maximum (the first such
    run when several are as long), as (start, end)."""
    dense = (counts >= max(1, counts.max()) * 0.5).view(np.int8)
    edges = np.diff(np.concatenate(([0], dense, [0])).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not len(starts):
        return None
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest])


def detect_faces(data: bytes) -> list[DetectedFace]:
    """Find colour-square faces in encoded image bytes, largest first.

    Raises ``RekognitionError(InvalidImageFormatException)`` for undecodable input.
    """
    img = _decode_image(data)
    # Each pixel's colour code (at most 215) computed by Pillow in C: a table lookup per channel
    # (its level times its weight in the code), then the three summed into one band. A fraction
    # of the CPU of numpy arithmetic on every pixel, and benchmarks send 50 images a second.
    code_image = img.point(_CODE_TABLE).convert("L", matrix=(1, 1, 1, 0))
    codes = np.asarray(code_image)
    height, width = codes.shape
    counts = np.array(code_image.histogram()[: _LEVELS**3])
    if counts[_WHITE_CODE] < MIN_WHITE_FRACTION * width * height:
        return []  # not a synthetic face image: real photos have no faces here
    min_side = max(MIN_SIDE_PX, MIN_SIDE_FRACTION * min(width, height))
    faces: list[DetectedFace] = []
    for code in np.flatnonzero(counts >= min_side * min_side * MIN_FILL):
        if code == _WHITE_CODE:
            continue
        mask = codes == code
        rows = _dense_span(mask.sum(axis=1))
        cols = _dense_span(mask.sum(axis=0))
        if rows is None or cols is None:
            continue
        (top, bottom), (left, right) = rows, cols
        box_h, box_w = bottom - top, right - left
        if min(box_h, box_w) < min_side or not MIN_ASPECT <= box_w / box_h <= MAX_ASPECT:
            continue
        if mask[top:bottom, left:right].mean() < MIN_FILL:
            continue
        c = int(code)
        colour = (
            c // (_LEVELS * _LEVELS) * LEVEL_STEP,
            c // _LEVELS % _LEVELS * LEVEL_STEP,
            c % _LEVELS * LEVEL_STEP,
        )
        faces.append(
            DetectedFace(
                colour=colour,
                left=left / width,
                top=top / height,
                width=box_w / width,
                height=box_h / height,
            )
        )
    # Largest first, then reading order, so "largest face" is deterministic.
    faces.sort(key=lambda f: (-round(f.area, 4), round(f.top, 2), f.left))
    return faces


def _face_detail(face: DetectedFace) -> dict[str, Any]:
    def point(kind: str, fx: float, fy: float) -> dict[str, Any]:
        return {
            "Type": kind,
            "X": round(face.left + fx * face.width, 6),
            "Y": round(face.top + fy * face.height, 6),
        }

    return {
        "BoundingBox": face.bounding_box(),
        "Landmarks": [
            point("eyeLeft", 0.3, 0.35),
            point("eyeRight", 0.7, 0.35),
            point("nose", 0.5, 0.55),
            point("mouthLeft", 0.35, 0.75),
            point("mouthRight", 0.65, 0.75),
        ],
        "Pose": {"Roll": 0.0, "Yaw": 0.0, "Pitch": 0.0},
        "Quality": {"Brightness": 80.0, "Sharpness": 90.0},
        "Confidence": FACE_CONFIDENCE,
    }


# --------------------------------------------------------------------------- server


def _go_first() -> None:
    """Raise this thread's priority where allowed (root, CAP_SYS_NICE).

    The fake is the instrument tests read request rates from: on a machine busy with other
    tests its threads should stamp a request when it arrives, not when a starved test process
    gets round to it, or calls that came a second apart look bunched into one window.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)


def _serve(server: _Server) -> None:
    _go_first()
    server.serve_forever(poll_interval=0.05)


class _Server(ThreadingHTTPServer):
    # Worker threads must not keep the interpreter alive, and botocore pools up to
    # max_pool_connections sockets per client: allow a deep accept backlog.
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, fake: FakeRekognition, address: tuple[str, int]) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed while its answer was held back (tests do it on purpose) is no error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def track(self, sock: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def close_connections(self) -> None:
        # Keep-alive threads block in readline(); shutting their sockets wakes them.
        with self._connections_lock:
            conns = list(self._connections)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: botocore reuses pooled connections
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def setup(self) -> None:
        super().setup()
        _go_first()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            # Without a length we cannot find the next request on this connection.
            self.close_connection = True
            return None if self.headers.get("Transfer-Encoding") else b""
        return self.rfile.read(int(length))

    def _send(self, status: int, payload: dict[str, Any], request_id: str) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", request_id)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self._read_body()
        request_id = str(uuid.uuid4())
        if self.path.startswith("/_fake/"):
            status, payload = self.server.fake._control(self.path, body or b"")
            self._send(status, payload, request_id)
            return
        if body is None:
            error = RekognitionError("SerializationException", "chunked bodies not supported")
            self._send(error.status, {"__type": error.code, "message": error.message}, request_id)
            return
        target = self.headers.get("X-Amz-Target", "")
        status, payload = self.server.fake._handle(target, body)
        self._send(status, payload, request_id)

    def do_GET(self) -> None:
        request_id = str(uuid.uuid4())
        path, _, query = self.path.partition("?")
        if path.rstrip("/") == "/_fake/stats":
            # ?records=0: the counters only, for a harness that polls while calls are made.
            brief = "records=0" in query.split("&")
            self._send(200, self.server.fake.stats(records=not brief), request_id)
        else:
            self._send(404, {"__type": "NotFound", "message": self.path}, request_id)


class FakeRekognition:
    """In-process fake Rekognition endpoint; see the module docstring for the scheme.

    Knobs (plain attributes, safe to change while serving): ``tps_quota`` (accepted
    requests allowed in any sliding 1 s window, None = unlimited), ``latency_seconds``
    (sleep added to every request, throttled or not), ``verbose`` (log requests).
    """

    def __init__(
        self,
        *,
        tps_quota: float | None = None,
        latency_seconds: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "eu-west-1",
        verbose: bool = False,
    ) -> None:
        self.tps_quota = tps_quota
        self.latency_seconds = latency_seconds
        # operation -> seconds to hold the answer after the request was carried out.
        self.hold_responses: dict[str, float] = {}
        self.processed: list[str] = []  # operations carried out, in order
        self.region = region
        self.verbose = verbose
        self._address = (host, port)
        self._lock = threading.RLock()
        self._collections: dict[str, _Collection] = {}
        self._face_seq = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._throttle_next = 0
        self._throttle_until = 0.0  # time.monotonic() before which every request is throttled
        # (operation or None for any, code, message, status)
        self._fail_next: deque[tuple[str | None, str, str, int | None]] = deque()
        # average hash of an image -> its TextDetections (register_text)
        self._texts: list[tuple[int, list[dict[str, Any]]]] = []
        self.reset_stats()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeRekognition:
        """Bind (port 0 = any free port) and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server(self, self._address)
        self._thread = threading.Thread(
            target=_serve,
            args=(self._server,),
            name="fake-rekognition",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeRekognition:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeRekognition is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, config: Any = None) -> Any:
        """A boto3 Rekognition client of this fake, with AWS_ENV's credentials and region."""
        import boto3  # only a harness that talks to the fake needs it, not the fake itself

        return boto3.client(
            "rekognition",
            endpoint_url=self.endpoint_url,
            region_name=AWS_ENV["AWS_REGION"],
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            config=config,
        )

    # ----------------------------------------------------------------- knobs

    def throttle_next(self, n: int = 1) -> None:
        """Answer the next ``n`` requests with ThrottlingException (adds to any pending)."""
        with self._lock:
            self._throttle_next += n

    def throttle_for(self, seconds: float) -> None:
        """A burst: answer every request that arrives in the next ``seconds`` with
        ThrottlingException, as AWS does when an account's quota is briefly lowered."""
        with self._lock:
            self._throttle_until = max(self._throttle_until, time.monotonic() + seconds)

    def fail_next(
        self,
        n: int,
        code: str,
        message: str | None = None,
        status: int | None = None,
        *,
        operation: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests (after pending throttles) with error ``code``; with
        ``operation`` (e.g. "IndexFaces") only requests of that operation, others pass."""
        with self._lock:
            for _ in range(n):
                self._fail_next.append((operation, code, message or f"injected {code}", status))

    def reset_stats(self) -> None:
        """Forget records and counters (collections are kept)."""
        with self._lock:
            self._records: list[RequestRecord] = []
            self._window: deque[float] = deque()
            self._accepted_starts: list[float] = []
            self.accepted_count = 0
            self.throttled_count = 0
            self.in_flight = 0
            self.max_in_flight = 0

    def reset(self) -> None:
        """Forget everything: collections, pending failures, records."""
        with self._lock:
            self._collections.clear()
            self._throttle_next = 0
            self._throttle_until = 0.0
            self._fail_next.clear()
            self.reset_stats()

    # ----------------------------------------------------------------- records

    @property
    def records(self) -> list[RequestRecord]:
        """(start, end, operation, throttled) per request, in completion order."""
        with self._lock:
            return list(self._records)

    def calls(
        self, operation: str | None = None, *, throttled: bool | None = None
    ) -> list[RequestRecord]:
        """Records, optionally only for ``operation`` and/or only (non-)throttled ones."""
        return [
            r
            for r in self.records
            if (operation is None or r.operation == operation)
            and (throttled is None or r.throttled == throttled)
        ]

    def max_calls_in_any_window(self, seconds: float = 1.0) -> int:
        """Most accepted requests whose start times fall in any window of ``seconds``."""
        with self._lock:
            starts = sorted(self._accepted_starts)
        best = 0
        for i, t in enumerate(starts):
            best = max(best, bisect.bisect_left(starts, t + seconds, lo=i) - i)
        return best

    def stored_faces(self, collection_id: str) -> list[dict[str, Any]]:
        """Copies of the Face dicts in a collection, each with an extra "Colour" key."""
        with self._lock:
            coll = self._collections[collection_id]
            return [{**s.face, "Colour": s.colour} for s in coll.faces.values()]

    def stats(self, *, records: bool = True) -> dict[str, Any]:
        """Counters and knobs; with ``records`` also every request's record and the most
        accepted calls in any 1 s window (both grow with the run: costly to poll often)."""
        with self._lock:
            stats: dict[str, Any] = {
                "endpoint_url": self.endpoint_url if self._server else None,
                "accepted": self.accepted_count,
                "throttled": self.throttled_count,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "tps_quota": self.tps_quota,
                "latency_seconds": self.latency_seconds,
            }
            if records:
                stats["max_calls_in_any_window"] = self.max_calls_in_any_window(1.0)
                stats["records"] = [list(r) for r in self._records]
            return stats

    # ----------------------------------------------------------------- dispatch

    def _control(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            return 400, {"__type": "SerializationException", "message": "bad JSON"}
        if path.rstrip("/") == "/_fake/reset":
            if params.get("all"):
                self.reset()
            else:
                self.reset_stats()
        elif path.rstrip("/") == "/_fake/config":
            if "tps_quota" in params:
                self.tps_quota = params["tps_quota"]
            if "latency_seconds" in params:
                self.latency_seconds = float(params["latency_seconds"])
            if params.get("throttle_next"):
                self.throttle_next(int(params["throttle_next"]))
            if params.get("throttle_for_seconds"):
                self.throttle_for(float(params["throttle_for_seconds"]))
            if params.get("fail_next"):
                spec = params["fail_next"]
                self.fail_next(
                    int(spec["n"]),
                    spec["code"],
                    spec.get("message"),
                    spec.get("status"),
                    operation=spec.get("operation"),
                )
        else:
            return 404, {"__type": "NotFound", "message": path}
        return 200, self.stats()

    def _admit(self, start: float, operation: str) -> RekognitionError | None:
        """Decide, atomically, whether a request is served or answered with an error."""
        with self._lock:
            if self._throttle_next > 0:
                self._throttle_next -= 1
                return RekognitionError("ThrottlingException", "Rate exceeded")
            if start < self._throttle_until:
                return RekognitionError("ThrottlingException", "Rate exceeded")
            for index, (aimed_at, code, message, status) in enumerate(self._fail_next):
                if aimed_at is None or aimed_at == operation:
                    del self._fail_next[index]
                    return RekognitionError(code, message, status)
            quota = self.tps_quota
            if quota is not None:
                while self._window and self._window[0] <= start - 1.0:
                    self._window.popleft()
                if len(self._window) + 1 > quota:
                    return RekognitionError("ThrottlingException", "Rate exceeded")
                self._window.append(start)
            self._accepted_starts.append(start)
            self.accepted_count += 1
            return None

    def _handle(self, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        start = time.monotonic()
        operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else target
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        error: RekognitionError | None = None
        result: dict[str, Any] = {}
        try:
            error = self._admit(start, operation)
            if self.latency_seconds > 0:
                time.sleep(self.latency_seconds)
            if error is None:
                result = self._dispatch(target, operation, body)
                # Tests kill a client while an answer it will never read is held back.
                with self._lock:
                    self.processed.append(operation)
                hold = self.hold_responses.get(operation, 0.0)
                if hold > 0:
                    time.sleep(hold)
        except RekognitionError as exc:
            error = exc
        except Exception as exc:  # a bug here must still produce an AWS-shaped answer
            error = RekognitionError("InternalServerError", f"{type(exc).__name__}: {exc}")
        finally:
            # Record before the response is written so a client that has its answer
            # always sees the request in the records and out of in_flight.
            throttled = error is not None and error.code in THROTTLING_CODES
            with self._lock:
                self.in_flight -= 1
                if throttled:
                    self.throttled_count += 1
                self._records.append(RequestRecord(start, time.monotonic(), operation, throttled))
        if error is not None:
            return error.status, {"__type": error.code, "message": error.message}
        return 200, result

    def _dispatch(self, target: str, operation: str, body: bytes) -> dict[str, Any]:
        if not target.startswith(TARGET_PREFIX):
            raise RekognitionError("UnknownOperationException", f"bad target {target!r}")
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            raise RekognitionError("UnknownOperationException", f"{operation} not implemented")
        try:
            params = json.loads(body) if body else {}
        except ValueError as exc:
            raise RekognitionError("SerializationException", "body is not JSON") from exc
        if not isinstance(params, dict):
            raise RekognitionError("SerializationException", "body is not a JSON object")
        return handler(params)

    # ----------------------------------------------------------------- helpers

    def _collection(self, params: dict[str, Any]) -> _Collection:
        cid = params.get("CollectionId")
        if not cid:
            raise RekognitionError("InvalidParameterException", "CollectionId is required")
        coll = self._collections.get(cid)
        if coll is None:
            raise RekognitionError(
                "ResourceNotFoundException", f"The collection id: {cid} does not exist"
            )
        return coll

    @staticmethod
    def _image_bytes(params: dict[str, Any]) -> bytes:
        image = params.get("Image") or {}
        if "S3Object" in image:
            raise RekognitionError("InvalidS3ObjectException", "S3 images are not supported")
        encoded = image.get("Bytes")
        if not encoded:
            raise RekognitionError("InvalidParameterException", "Request has invalid parameters")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RekognitionError("SerializationException", "Image.Bytes is not base64") from exc
        if len(data) > MAX_IMAGE_BYTES:
            raise RekognitionError("ImageTooLargeException", "Image size is too large.")
        return data

    @staticmethod
    def _page(params: dict[str, Any]) -> tuple[int, int]:
        """(size, after_seq) from MaxResults and our opaque NextToken."""
        size = int(params.get("MaxResults") or DEFAULT_PAGE_SIZE)
        token = params.get("NextToken")
        after = -1
        if token:
            try:
                after = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("p:"))
            except (ValueError, binascii.Error) as exc:
                raise RekognitionError(
                    "InvalidPaginationTokenException", "Invalid pagination token"
                ) from exc
        return max(1, size), after

    @staticmethod
    def _token(seq: int) -> str:
        return base64.urlsafe_b64encode(f"p:{seq}".encode()).decode()

    def _matches(
        self, coll: _Collection, colour: Colour, params: dict[str, Any], exclude: str | None
    ) -> list[dict[str, Any]]:
        threshold = float(params.get("FaceMatchThreshold", 80.0))
        max_faces = int(params.get("MaxFaces") or 4096)
        if SIMILARITY < threshold:
            return []
        found = [
            {"Similarity": SIMILARITY, "Face": dict(s.face)}
            for fid, s in coll.faces.items()
            if s.colour == colour and fid != exclude
        ]
        return found[:max_faces]

    # ----------------------------------------------------------------- operations

    def _op_CreateCollection(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = params.get("CollectionId")
        if not cid:
            raise RekognitionError("InvalidParameterException", "CollectionId is required")
        with self._lock:
            if cid in self._collections:
                raise RekognitionError(
                    "ResourceAlreadyExistsException", f"The collection id: {cid} already exists"
                )
            self._collections[cid] = _Collection(cid, time.time())
        return {
            "StatusCode": 200,
            # Real AWS returns this ARN without the leading "arn:".
            "CollectionArn": f"aws:rekognition:{self.region}:{ACCOUNT_ID}:collection/{cid}",
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    def _op_DescribeCollection(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            coll = self._collection(params)
            return {
                "FaceCount": len(coll.faces),
                "UserCount": 0,
                "FaceModelVersion": FACE_MODEL_VERSION,
                "CollectionARN": (
                    f"arn:aws:rekognition:{self.region}:{ACCOUNT_ID}:collection/"
                    f"{coll.collection_id}"
                ),
                "CreationTimestamp": coll.created,
            }

    def _op_ListCollections(self, params: dict[str, Any]) -> dict[str, Any]:
        size, after = self._page(params)
        with self._lock:
            ids = sorted(self._collections)
        page = ids[after + 1 : after + 1 + size]
        result: dict[str, Any] = {
            "CollectionIds": page,
            "FaceModelVersions": [FACE_MODEL_VERSION] * len(page),
        }
        if after + 1 + size < len(ids):
            result["NextToken"] = self._token(after + size)
        return result

    def _op_DeleteCollection(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            coll = self._collection(params)
            del self._collections[coll.collection_id]
        return {"StatusCode": 200}

    def _op_IndexFaces(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._collection(params)  # fail fast, before decoding the image
        detected = detect_faces(self._image_bytes(params))
        max_faces = int(params.get("MaxFaces") or MAX_FACES_PER_IMAGE)
        keep = detected[: min(max_faces, MAX_FACES_PER_IMAGE)]
        image_id = str(uuid.uuid4())
        records: list[dict[str, Any]] = []
        with self._lock:
            coll = self._collection(params)  # it may have been deleted meanwhile
            for face in keep:
                self._face_seq += 1
                stored = {
                    "FaceId": str(uuid.uuid4()),
                    "BoundingBox": face.bounding_box(),
                    "ImageId": image_id,
                    "Confidence": FACE_CONFIDENCE,
                    "IndexFacesModelVersion": FACE_MODEL_VERSION,
                }
                if params.get("ExternalImageId"):
                    stored["ExternalImageId"] = params["ExternalImageId"]
                coll.faces[stored["FaceId"]] = _StoredFace(self._face_seq, face.colour, stored)
                records.append({"Face": dict(stored), "FaceDetail": _face_detail(face)})
        return {
            "FaceRecords": records,
            "FaceModelVersion": FACE_MODEL_VERSION,
            "UnindexedFaces": [
                {"Reasons": ["EXCEEDS_MAX_FACES"], "FaceDetail": _face_detail(face)}
                for face in detected[len(keep) :]
            ],
        }

    def register_text(
        self,
        image: Image.Image,
        lines: Sequence[tuple[str, tuple[float, float, float, float], float]],
    ) -> None:
        """What DetectText answers for ``image`` (or a scaled, re-encoded copy of it): LINE
        detections of (text, (left, top, width, height) as fractions, confidence 0-100)."""
        detections = []
        for index, (text, (left, top, width, height), confidence) in enumerate(lines):
            detections.append(
                {
                    "DetectedText": text,
                    "Type": "LINE",
                    "Id": index,
                    "Confidence": confidence,
                    "Geometry": {
                        "BoundingBox": {
                            "Width": width,
                            "Height": height,
                            "Left": left,
                            "Top": top,
                        },
                        "Polygon": [
                            {"X": left, "Y": top},
                            {"X": left + width, "Y": top},
                            {"X": left + width, "Y": top + height},
                            {"X": left, "Y": top + height},
                        ],
                    },
                }
            )
        with self._lock:
            self._texts.append((average_hash(image), detections))

    def _op_DetectText(self, params: dict[str, Any]) -> dict[str, Any]:
        key = average_hash(_decode_image(self._image_bytes(params)))
        with self._lock:
            known = [(bin(key ^ other).count("1"), lines) for other, lines in self._texts]
        near = min(known, key=lambda item: item[0], default=(64, []))
        return {
            "TextDetections": [dict(line) for line in near[1]] if near[0] <= 6 else [],
            "TextModelVersion": "3.0",
        }

    def _op_SearchFaces(self, params: dict[str, Any]) -> dict[str, Any]:
        face_id = params.get("FaceId")
        with self._lock:
            coll = self._collection(params)
            stored = coll.faces.get(face_id or "")
            if stored is None:
                raise RekognitionError(
                    "InvalidParameterException", f"Face {face_id} not found in the collection"
                )
            matches = self._matches(coll, stored.colour, params, exclude=face_id)
        return {
            "SearchedFaceId": face_id,
            "FaceMatches": matches,
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    def _op_SearchFacesByImage(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._collection(params)
        detected = detect_faces(self._image_bytes(params))
        if not detected:
            # What AWS does for an image without faces, rather than an empty answer.
            raise RekognitionError(
                "InvalidParameterException",
                "There are no faces in the image. Should be at least 1.",
            )
        face = detected[0]
        with self._lock:
            coll = self._collection(params)
            matches = self._matches(coll, face.colour, params, exclude=None)
        return {
            "SearchedFaceBoundingBox": face.bounding_box(),
            "SearchedFaceConfidence": FACE_CONFIDENCE,
            "FaceMatches": matches,
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    def _op_DeleteFaces(self, params: dict[str, Any]) -> dict[str, Any]:
        face_ids = params.get("FaceIds") or []
        if not face_ids:
            raise RekognitionError("InvalidParameterException", "FaceIds is required")
        deleted: list[str] = []
        missing: list[dict[str, Any]] = []
        with self._lock:
            coll = self._collection(params)
            for fid in face_ids:
                if coll.faces.pop(fid, None) is not None:
                    deleted.append(fid)
                else:
                    missing.append({"FaceId": fid, "Reasons": ["FACE_NOT_FOUND"]})
        result: dict[str, Any] = {"DeletedFaces": deleted}
        if missing:
            result["UnsuccessfulFaceDeletions"] = missing
        return result

    def _op_ListFaces(self, params: dict[str, Any]) -> dict[str, Any]:
        size, after = self._page(params)
        wanted = set(params.get("FaceIds") or [])
        with self._lock:
            coll = self._collection(params)
            faces = [
                s
                for s in coll.faces.values()
                if s.seq > after and (not wanted or s.face["FaceId"] in wanted)
            ]
        page = faces[:size]
        result: dict[str, Any] = {
            "Faces": [dict(s.face) for s in page],
            "FaceModelVersion": FACE_MODEL_VERSION,
        }
        if len(faces) > size:
            result["NextToken"] = self._token(page[-1].seq)
        return result


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake AWS Rekognition endpoint.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tps", type=float, default=None, help="accepted requests per 1 s")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--region", default="eu-west-1")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    fake = FakeRekognition(
        tps_quota=args.tps,
        latency_seconds=args.latency,
        host=args.host,
        port=args.port,
        region=args.region,
        verbose=args.verbose,
    ).start()
    stopping = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stopping.set()

    # Before the address is printed: a harness may stop the fake as soon as it has it.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    host = args.host if args.host not in ("", "0.0.0.0") else "127.0.0.1"
    # The first stdout line is the contract with harnesses: flush it immediately.
    print(f"http://{host}:{fake.port}", flush=True)
    # Poll so signal handlers get a chance to run in the main thread.
    while not stopping.wait(0.2):
        pass
    summary = {k: v for k, v in fake.stats().items() if k != "records"}
    fake.stop()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
