"""Benchmark `photoctl serve`: GET /api/my-photos and a participant's gallery (its page and its
JSON twin) at a fixed rate, idle and while the queue drains; then a zip of 100 previews.

Everything runs against 127.0.0.1, in a temporary directory removed at the end (--keep keeps it),
with the PHOTOCTL_* variables of this environment removed and that directory as the working
directory of every photoctl process (so no config.ini or .env from elsewhere is read). Every
process started is killed at the end, on an error and on Ctrl-C (each runs in its own process
group, which is what gets signalled: a `photoctl work` or a multi-worker `serve` takes its
children with it).

  1. Setup, on a fresh SQLite data dir: USERS users made with `photoctl users add` (tokens read
     from stdout). An initial set of photos (copies and variants of the real faces - rescaled,
     recompressed, pasted into larger frames - and INITIAL_SCENERY generated photos without
     faces) is ingested and processed with `photoctl work -n 2 --until-empty`. Then the first
     ENROLLED users are enrolled with `photoctl users enroll`, alternately with
     tests/data/obama_1.jpg and tests/data/biden.jpg (they share faces: it is a load test).
     Enrolling matches a selfie against every stored face, so each of them gets a non-empty
     /api/my-photos list (checked before the windows); a face found later goes to the closest
     enrolled user only, which is why they are enrolled after the initial photos.
     Then PHOTOS generated 1600x1067 JPEGs (one in FACE_EVERY with a real face pasted in) are
     ingested, but not processed: the queue the load phase drains. A second batch of
     INGEST_BATCH photos is generated for the concurrent ingest.
  2. `photoctl serve --workers SERVE_WORKERS` and a short warm-up. Cost per route: each route
     alone for ROUTE_SECONDS at ROUTE_RATE requests/s (a rate serve keeps up with), and serve's
     CPU per request of each (the mix's CPU per request says nothing about which route costs
     it); `--routes-only` stops here. Baseline: the request mix (see 3) at RATE requests/s for
     DURATION seconds, with no background work.
  3. Under load: the same request load while `photoctl work -n WORKERS` drains the queue and
     `photoctl ingest` registers the second batch. The workers are started first and the window
     opens once they hold a job (their start-up - imports, face models - is reported, not
     measured). Queue progress is printed every 5 s; jobs done in the window are reported.
     Requests go round robin over three routes: /api/my-photos (a user's bearer token),
     /g/<token> (a participant's gallery page) and /api/g/<token> (its JSON twin), the
     participants being PARTICIPANTS people enrolled through POST /api/e/default with the same
     two selfies once serve is up. Each route's p99 is reported beside the mix's.
  4. Uploads: UPLOADS distinct generated JPEGs POSTed to /api/photos, spread round robin over
     the users (2 each with the defaults, well under serve.upload_rate), UPLOAD_CONCURRENCY at
     a time (1 = sequential), with the workers stopped. Total seconds are reported.

  5. Download all: GET /g/<token>/zip?variant=preview for a participant matched to ZIP_PHOTOS
     photos (ingested and processed at setup with faces.engine = none; their matches written
     into the database directly, since how a match was made does not change the zip): time to
     the first byte, total time and size, and serve's resident memory (VmRSS, the serve process
     and its children) before, at its highest while the zip streams (sampled every 20 ms), and
     after.

The load generator (scripts/_loadgen.py, which says why it is built as it is) is a process of
its own, in a session (autogroup) of its own at GENERATOR_NICE (-5: above serve and the
workers, so the instrument is not what waits for a CPU), open-loop: request i is due at start +
i/RATE whatever happened to the earlier ones, sent on one of CONNECTIONS keep-alive connections
opened before the clock starts (a request due while all are busy waits for one, and that wait
counts), one thread on epoll, ~0.1 ms of CPU a request. Latency is measured from the due time to
the last byte of the answer (a stalled server cannot hide behind a slowed-down client: no
coordinated omission); the latency from the actual send is printed beside it, and so are the
generator's lateness (due -> noticed) and its wait for a free connection, the achieved rate,
the generator's CPU use and the CPU use of the serve process(es) (per request: independent of
what else runs on the machine), and the time each spent runnable but waiting for a CPU
(/proc schedstat). A response that is not 200, a transport error or a timeout counts as an
error. The machine's CPU use in each window is split into serve, generator, workers and
everything else (from /proc); a window in which other processes used more than 10% of the
machine is flagged as disturbed, since on a 2-core machine their load, not photoctl's, then
decides the tail. `--probe` runs serve under scripts/_serve_probe.py and adds, per window, its
garbage collections and the times its event loop ran late.

Targets on a 2-core machine: p99 <= 50 ms and no errors at 200 requests/s while the queue drains,
p99 under load <= 2x the idle p99, 100 uploads in <= 2 s, the zip's first byte in <= 200 ms with
serve's memory growing by less than ZIP_RSS_GROWTH_MB. Exit code 0 when every target is met,
1 when one is missed, 2 when the benchmark itself could not run.

CPU priority: every process is started in its own session, as separate services or terminals
would be. On Linux with autogroups (kernel.sched_autogroup_enabled = 1) the CPU is shared
between sessions first, and a nice value counts only inside its session, so the workers'
queue.worker_nice protects serve only if their session's autogroup is lowered too (photoctl
work does that when it leads its session). `--work-under-shell` starts it under `sh -c`
instead, where it does not: the report's "CPU priorities" line shows the nice values and
autogroups of serve and of the workers.

`--py-spy DIR` records each window of the serve process(es) with `py-spy record --idle` (needs
py-spy in the venv and ptrace permission) into DIR/idle.txt and DIR/load.txt: collapsed stacks,
idle (waiting) threads included, so time blocked on a lock shows; render them with any flame
graph tool, or count the frames.

    .venv/bin/python scripts/bench_serve.py
    .venv/bin/python scripts/bench_serve.py --rate 200 --duration 30 --photos 300 --serve-workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import os
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _bench import clean_env, descendants, priorities
from _serve_window import BenchError, Target, Window, fire, probe_report, targets
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
FACES = ROOT / "tests" / "data"
SELFIES = ("obama_1.jpg", "biden.jpg")
FACE_FILES = ("obama_1.jpg", "obama_2.jpg", "obama_3.jpg", "biden.jpg")
PHOTO_SIZE = (1600, 1067)
SETTLED_AGE_SECONDS = 3600
TARGET_P99_MS = 50.0
TARGET_P99_RATIO = 2.0
TARGET_UPLOAD_SECONDS = 2.0
TARGET_ZIP_FIRST_BYTE_MS = 200.0
# "Memory flat": what serve may grow by while a zip streams (one chunk and one open file).
ZIP_RSS_GROWTH_MB = 20.0
PROGRESS_EVERY_SECONDS = 5.0


# -- processes ------------------------------------------------------------------------------


class Processes:
    """Every process this benchmark starts, each in its own process group, killed at the end."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.running: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def start(
        self, args: list[str], log_name: str, *, stdin: int | None = None, **extra_env: str
    ) -> subprocess.Popen:
        log = open(self.workdir / log_name, "ab")  # closed by the child's exit
        process = subprocess.Popen(
            args,
            cwd=self.workdir,
            env={**self.env, **extra_env},
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE if log_name.endswith(".out") else log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        with self.lock:
            self.running.append(process)
        return process

    def photoctl(self, args: list[str], log_name: str, **extra_env: str) -> subprocess.Popen:
        return self.start([sys.executable, "-m", "photoctl", *args], log_name, **extra_env)

    def run(self, args: list[str], log_name: str, timeout: float = 300, **extra_env: str) -> str:
        """Run photoctl to completion; its stdout, or BenchError naming the log on failure."""
        process = self.photoctl(args, log_name + ".out", **extra_env)
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            self.stop(process, grace=1)
            raise BenchError(f"photoctl {' '.join(args)}: timed out after {timeout} s") from error
        self.forget(process)
        if process.returncode != 0:
            log = (self.workdir / (log_name + ".out")).read_text(errors="replace")[-2000:]
            raise BenchError(f"photoctl {' '.join(args)} exited {process.returncode}:\n{log}")
        return stdout.decode()

    def forget(self, process: subprocess.Popen) -> None:
        with self.lock:
            if process in self.running:
                self.running.remove(process)

    def stop(self, process: subprocess.Popen, grace: float = 20, sig: int = signal.SIGTERM) -> None:
        """Signal the process group, wait up to `grace` seconds, then SIGKILL the group."""
        _signal_group(process, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # The leader may be gone while a child of it lingers: the group is killed either way.
        _signal_group(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        self.forget(process)

    def stop_all(self) -> None:
        with self.lock:
            left = list(self.running)
        for process in left:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in left:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in left:
            _signal_group(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            self.forget(process)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    # start_new_session=True: the group id is the pid of the process we started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parallel(function, items, threads: int) -> list:
    """map() over a few threads; on an error or Ctrl-C the items not started yet are dropped
    (only the running ones, each short, are waited for) instead of all being run first."""
    pool = ThreadPoolExecutor(threads)
    try:
        return list(pool.map(function, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- photos ---------------------------------------------------------------------------------


def _settle(path: Path) -> None:
    past = time.time() - SETTLED_AGE_SECONDS
    os.utime(path, (past, past))


def _background(seed: int, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    """A photo-sized picture whose pixels depend on the seed, with noise so it compresses like a
    photo (a few hundred kB) rather than like a flat drawing."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        w, h = rng.randrange(80, 600), rng.randrange(80, 400)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle([x, y, x + w, y + h], fill=colour)
    draw.text((20, 20), f"bench photo {seed}", fill=(255, 255, 255))
    noise = Image.effect_noise(size, 30).convert("RGB")
    return Image.blend(image, noise, 0.25)


def _paste_face(image: Image.Image, face: Image.Image, rng: random.Random) -> None:
    scale = rng.uniform(0.75, 1.0) * image.height / face.height
    face = face.resize((int(face.width * scale), int(face.height * scale)), Image.BILINEAR)
    x = rng.randrange(0, max(1, image.width - face.width))
    y = rng.randrange(0, max(1, image.height - face.height))
    image.paste(face, (x, y))


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def generated_photo(seed: int, face: Image.Image | None) -> bytes:
    image = _background(seed)
    if face is not None:
        _paste_face(image, face, random.Random(seed))
    return _jpeg(image)


def write_batch(folder: Path, count: int, first_seed: int, face_every: int) -> int:
    """COUNT settled 1600x1067 JPEGs, one in FACE_EVERY with a real face; how many have one."""
    faces = [Image.open(FACES / name).convert("RGB") for name in FACE_FILES]
    folder.mkdir(parents=True, exist_ok=True)

    def write(index: int) -> bool:
        seed = first_seed + index
        face = faces[index % len(faces)] if face_every and index % face_every == 0 else None
        path = folder / f"set{index // 50:03d}" / f"IMG_{seed:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(generated_photo(seed, face))
        _settle(path)
        return face is not None

    return sum(parallel(write, range(count), os.cpu_count() or 2))


def write_initial(folder: Path, scenery: int) -> int:
    """Copies and variants of the real faces (so lists exist), plus photos without faces."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for number, name in enumerate(FACE_FILES):
        source = FACES / name
        shutil.copy(source, folder / name)
        _settle(folder / name)
        face = Image.open(source).convert("RGB")
        variants = {
            f"{source.stem}_q70.jpg": _jpeg(face, 70),
            f"{source.stem}_small.jpg": _jpeg(
                face.resize((face.width * 3 // 4, face.height * 3 // 4)), 85
            ),
            f"{source.stem}_framed.jpg": generated_photo(10_000 + number, face),
        }
        for variant, data in variants.items():
            (folder / variant).write_bytes(data)
            _settle(folder / variant)
        written += 1 + len(variants)
    for index in range(scenery):
        path = folder / f"scenery_{index:03d}.jpg"
        path.write_bytes(_jpeg(_background(20_000 + index)))
        _settle(path)
    return written


# -- database figures (read straight from the SQLite file; SELECTs only) ---------------------


class QueueFigures:
    def __init__(self, database: Path) -> None:
        self.database = database

    def states(self) -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as conn:
            rows = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        return dict(rows)

    def scalar(self, query: str) -> int:
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as conn:
            return conn.execute(query).fetchone()[0]


async def _upload_all(
    url: str, tokens: list[str], photos: list[bytes], concurrency: int
) -> tuple[float, list[float], dict[str, int]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    seconds: list[float] = []
    errors: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        await client.get("/healthz")

        async def one(index: int) -> None:
            async with gate:
                began = time.perf_counter()
                try:
                    answer = await client.post(
                        "/api/photos",
                        headers={"Authorization": f"Bearer {tokens[index % len(tokens)]}"},
                        files={"file": (f"upload_{index:04d}.jpg", photos[index], "image/jpeg")},
                    )
                    if answer.status_code != 202:
                        key = f"HTTP {answer.status_code}: {answer.text[:80]}"
                        errors[key] = errors.get(key, 0) + 1
                except httpx.HTTPError as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                seconds.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(one(index) for index in range(len(photos))))
        return time.perf_counter() - began, seconds, errors


# -- the benchmark --------------------------------------------------------------------------


@contextlib.contextmanager
def py_spy(processes: Processes, server: subprocess.Popen, out: Path | None, name: str) -> Iterator:
    """py-spy record of the serve process (and its uvicorn children) during one window."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("  (py-spy not found: no profile)", file=sys.stderr)
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    recorder = processes.start(
        [spy, "record", "--nonblocking", "--subprocesses", "--idle", "--format", "raw", "-r", "100",
         "-o", str(out / f"{name}.txt"), "--pid", str(server.pid)],
        f"py-spy-{name}.log",
    )  # fmt: skip
    try:
        yield
    finally:
        processes.stop(recorder, grace=20, sig=signal.SIGINT)
        print(f"  py-spy profile: {out / f'{name}.txt'}", file=sys.stderr)


PROBE = Path(__file__).resolve().with_name("_serve_probe.py")


def start_server(
    processes: Processes, workers: int, probe: Path | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = ["-q", "serve", "--port", str(port), "--workers", str(workers)]
    if probe is None:
        server = processes.photoctl(command, "serve.log")
    else:
        server = processes.start([sys.executable, str(PROBE), str(probe), *command], "serve.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            log = (processes.workdir / "serve.log").read_text(errors="replace")[-2000:]
            raise BenchError(f"photoctl serve did not start:\n{log}")
        time.sleep(0.1)


def setup(processes: Processes, args: argparse.Namespace, tmp: Path) -> list[str]:
    began = time.perf_counter()
    names = [f"bench{index:03d}" for index in range(args.users)]

    def add(index: int) -> str:
        return processes.run(["-q", "users", "add", names[index]], f"users-{index}").strip()

    def enroll(index: int) -> None:
        selfie = str(FACES / SELFIES[index % len(SELFIES)])
        command = ["-q", "users", "enroll", names[index], "--selfie", selfie]
        processes.run(command, f"enroll-{index}")

    # The first command creates the database; the others run two at a time.
    tokens = [add(0)]
    tokens += parallel(add, range(1, args.users), 2)
    if not all(tokens) or len(set(tokens)) != len(tokens):
        raise BenchError("users add did not print one token per user")
    print(f"setup: {args.users} users in {time.perf_counter() - began:.1f} s", file=sys.stderr)

    began = time.perf_counter()
    faces = write_initial(tmp / "initial", args.initial_scenery)
    processes.run(["-q", "ingest", str(tmp / "initial"), "--album", "Initial"], "ingest-initial")
    processes.run(["-q", "work", "-n", "2", "--until-empty"], "work-initial", timeout=600)
    print(
        f"setup: {faces} face photos + {args.initial_scenery} without faces ingested and "
        f"processed in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )
    began = time.perf_counter()
    write_batch(tmp / "zip", args.zip_photos, 400_000, 0)
    processes.run(["-q", "ingest", str(tmp / "zip"), "--album", "Zip"], "ingest-zip")
    processes.run(
        ["-q", "work", "-n", "2", "--until-empty"], "work-zip", timeout=600,
        PHOTOCTL_FACES_ENGINE="none",
    )  # fmt: skip
    print(
        f"setup: {args.zip_photos} photos for the zip processed (no faces looked for) in "
        f"{time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )
    # Enrolled after the photos are processed: enrolling matches the selfie against every stored
    # face, so users sharing a selfie all get the photos. (A face found later goes to the one
    # closest enrolled user only, so enrolling first would fill the lists of two users.)
    began = time.perf_counter()
    parallel(enroll, range(args.enrolled), 2)
    print(
        f"setup: {args.enrolled} users enrolled ({' / '.join(SELFIES)} alternately) in "
        f"{time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )

    began = time.perf_counter()
    in_queue = write_batch(tmp / "queue", args.photos, 100_000, args.face_every)
    in_ingest = write_batch(tmp / "batch", args.ingest_batch, 200_000, args.face_every)
    processes.run(["-q", "ingest", str(tmp / "queue"), "--album", "Queue"], "ingest-queue")
    print(
        f"setup: generated {args.photos} + {args.ingest_batch} photos "
        f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ({in_queue} + {in_ingest} with a face), "
        f"queued the first {args.photos} in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )
    return tokens


def enroll_participants(url: str, count: int) -> list[str]:
    """COUNT participants through the default event's enrollment (the JSON twin of its form),
    alternately with the two selfies; their gallery tokens."""
    galleries = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for index in range(count):
            selfie = FACES / SELFIES[index % len(SELFIES)]
            answer = client.post(
                "/api/e/default",
                data={"consent": "true"},
                files={"selfie": (selfie.name, selfie.read_bytes(), "image/jpeg")},
            )
            if answer.status_code != 201:
                raise BenchError(f"enrolling a participant: {answer.status_code} {answer.text}")
            galleries.append(answer.json()["gallery_token"])
    return galleries


def match_zip_photos(database: Path, gallery_token: str, count: int) -> int:
    """Match the participant to COUNT processed photos of the Zip album, in the database."""
    digest = hashlib.sha256(gallery_token.encode()).hexdigest()
    now = time.time()
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn, conn:
        user_id = conn.execute(
            "SELECT id FROM users WHERE gallery_token_hash = ?", (digest,)
        ).fetchone()[0]
        face_id = conn.execute("SELECT min(id) FROM faces").fetchone()[0]
        photos = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM photos WHERE album = 'Zip' AND processed_at IS NOT NULL "
                "ORDER BY id LIMIT ?",
                (count,),
            )
        ]
        conn.executemany(
            "INSERT OR IGNORE INTO matches (photo_id, user_id, face_id, similarity, matched_at, "
            "source, findable_at) VALUES (?, ?, ?, 90.0, ?, 'photo', ?)",
            [(photo, user_id, face_id, now, now) for photo in photos],
        )
    return len(photos)


def _rss_mb(pid: int) -> float:
    total = 0
    for current in descendants(pid):
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def zip_download(url: str, gallery_token: str, server_pid: int) -> dict:
    """Time to first byte and serve's memory while the participant's zip of previews streams."""
    samples: list[float] = []
    streaming = threading.Event()

    def sample() -> None:
        while not streaming.is_set():
            samples.append(_rss_mb(server_pid))
            time.sleep(0.02)

    before = _rss_mb(server_pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    size = 0
    with httpx.Client(base_url=url, timeout=120) as client:
        began = time.perf_counter()
        with client.stream(
            "GET", f"/g/{gallery_token}/zip", params={"variant": "preview"}
        ) as answer:
            if answer.status_code != 200:
                raise BenchError(f"zip answered {answer.status_code}")
            first_byte = None
            for chunk in answer.iter_raw():
                if first_byte is None:
                    first_byte = time.perf_counter() - began
                size += len(chunk)
        total = time.perf_counter() - began
    streaming.set()
    sampler.join()
    return {
        "first_byte_ms": (first_byte or total) * 1000,
        "total_s": total,
        "mb": size / 1024 / 1024,
        "rss_before": before,
        "rss_peak": max(samples, default=before),
        "rss_after": _rss_mb(server_pid),
    }


def check_lists(url: str, tokens: list[str], enrolled: int) -> None:
    counts = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for token in tokens[:enrolled]:
            answer = client.get("/api/my-photos", headers={"Authorization": f"Bearer {token}"})
            if answer.status_code != 200:
                raise BenchError(f"/api/my-photos answered {answer.status_code}: {answer.text}")
            counts.append(len(answer.json()["photos"]))
    print(f"setup: my-photos list sizes of the enrolled users: {counts}", file=sys.stderr)
    if enrolled and not all(counts):
        raise BenchError("an enrolled user has an empty /api/my-photos list")


def run_window(
    processes: Processes,
    name: str,
    url: str,
    requests: list[Target],
    args: argparse.Namespace,
    server_pid: int,
    rate: float | None = None,
    duration: float | None = None,
) -> Window:
    window = Window(name, rate or args.rate, duration or args.duration)
    fire(
        window, processes, url, requests, args.connections, args.timeout, args.generator_nice,
        server_pid,
    )  # fmt: skip
    if args.probe:
        window.probe = probe_report(processes.workdir / "probe.txt", window)
    return window


def route_costs(
    processes: Processes,
    url: str,
    requests: list[Target],
    args: argparse.Namespace,
    server_pid: int,
) -> dict[str, Window]:
    """One short idle window per route, at a rate serve keeps up with: what each route costs.

    Serve's CPU per request over the mix says nothing about which route costs it; here each
    route gets the whole of serve for ROUTE_SECONDS, so its CPU per request is its own."""
    costs = {}
    for route in dict.fromkeys(target.route for target in requests):
        mine = [target for target in requests if target.route == route]
        costs[route] = run_window(
            processes, f"route {route}", url, mine, args, server_pid,
            args.route_rate, args.route_seconds,
        )  # fmt: skip
    return costs


def route_report(costs: dict[str, Window]) -> str:
    lines = ["serve CPU per request by route (idle, one route at a time):"]
    for route, window in costs.items():
        done = max(1, len(window.scheduled_ms))
        lines.append(
            f"  {route:16s} {1000 * window.server_cpu / done:6.2f} ms CPU/request "
            f"({done} requests at {window.rate:g}/s); p50 {window.p(window.scheduled_ms, 0.5):.2f}"
            f" ms, p99 {window.p99:.2f} ms, errors {window.error_count()}"
            + (f" (disturbed: others used {window.disturbance:.0%})" if window.disturbed else "")
        )
    return "\n".join(lines)


def warm_up(
    processes: Processes,
    url: str,
    requests: list[Target],
    args: argparse.Namespace,
    server_pid: int,
) -> None:
    """Every request once (fills the cache) and 2 s at the rate, not counted."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for target in requests:
            client.get(target.path, headers=target.headers)
    run_window(processes, "warm-up", url, requests, args, server_pid, duration=2.0)


def under_load(
    processes: Processes,
    figures: QueueFigures,
    url: str,
    requests: list[Target],
    args: argparse.Namespace,
    tmp: Path,
    server: subprocess.Popen,
) -> tuple[Window, dict]:
    before = figures.states()
    began = time.perf_counter()
    command = [sys.executable, "-m", "photoctl", "-q", "work", "-n", str(args.workers)]
    if args.work_under_shell:
        # sh leads the session, not photoctl work: its workers keep their nice value only.
        command = ["sh", "-c", " ".join(shlex.quote(part) for part in command)]
    work = processes.start(command, "work-load.log")
    deadline = time.monotonic() + 120
    while figures.states().get("running", 0) == 0 and figures.states().get("done", 0) == before.get(
        "done", 0
    ):
        if work.poll() is not None:
            raise BenchError(f"photoctl work exited {work.returncode}; see work-load.log")
        if time.monotonic() > deadline:
            raise BenchError("photoctl work claimed nothing within 120 s")
        time.sleep(0.1)
    lead = time.perf_counter() - began
    niceness = f"serve: {priorities(server.pid)}; work: {priorities(work.pid)}"
    ingest_began = time.monotonic()  # the load generator's clock: compared with the window
    ingest = processes.photoctl(
        ["-q", "ingest", str(tmp / "batch"), "--album", "Batch"], "ingest-load.log"
    )
    ingest_seconds: list[float] = []
    done_at_start = figures.states().get("done", 0)

    def watch_ingest() -> None:
        ingest.wait()
        ingest_seconds.append(time.monotonic() - ingest_began)

    watcher = threading.Thread(target=watch_ingest, daemon=True)
    watcher.start()

    window = Window("under load", args.rate, args.duration)

    def tick(elapsed: float) -> None:
        states = figures.states()
        line = (
            f"  t={elapsed:4.0f} s: done {states.get('done', 0) - done_at_start} in the window, "
            f"running {states.get('running', 0)}, queued {states.get('queued', 0)}, "
            f"failed {states.get('failed', 0)}"
        )
        window.progress.append(line)
        print(line, file=sys.stderr)

    with py_spy(processes, server, args.py_spy, "load"):
        fire(
            window, processes, url, requests, args.connections, args.timeout,
            args.generator_nice, server.pid, tick, PROGRESS_EVERY_SECONDS, work.pid,
        )  # fmt: skip
    if args.probe:
        window.probe = probe_report(processes.workdir / "probe.txt", window)
    after = figures.states()
    processes.stop(work, grace=60, sig=signal.SIGINT)
    watcher.join(120)
    if ingest.poll() is None:
        processes.stop(ingest, grace=5)
    else:
        processes.forget(ingest)
    drained = {
        "workers_lead_seconds": lead,
        "priorities": niceness,
        "done_in_window": after.get("done", 0) - done_at_start,
        "queued_at_start": before.get("queued", 0),
        "queued_at_end": after.get("queued", 0),
        "failed": after.get("failed", 0) - before.get("failed", 0),
        "ingest_seconds": ingest_seconds[0] if ingest_seconds else None,
        "ingest_began_in_window": ingest_began - window.began_at,
        "ingest_exit": ingest.returncode,
        "enqueued_by_ingest": sum(after.values()) - sum(before.values()),
    }
    return window, drained


def uploads(url: str, tokens: list[str], args: argparse.Namespace) -> dict:
    photos = [generated_photo(300_000 + index, None) for index in range(args.uploads)]
    total, seconds, errors = asyncio.run(_upload_all(url, tokens, photos, args.upload_concurrency))
    seconds.sort()
    return {
        "total": total,
        "p50": seconds[len(seconds) // 2] if seconds else float("nan"),
        "max": seconds[-1] if seconds else float("nan"),
        "errors": errors,
        "mean_kb": sum(len(photo) for photo in photos) / len(photos) / 1024 if photos else 0,
    }


def run(args: argparse.Namespace, tmp: Path) -> int:
    env = clean_env(
        {
            "PHOTOCTL_DATA_DIR": str(tmp / "data"),
            "PHOTOCTL_DATABASE_URL": f"sqlite:///{tmp / 'data' / 'photoctl.db'}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    processes = Processes(tmp, env)
    try:
        tokens = setup(processes, args, tmp)
        figures = QueueFigures(tmp / "data" / "photoctl.db")
        server, url = start_server(
            processes, args.serve_workers, tmp / "probe.txt" if args.probe else None
        )
        print(
            f"serve: {url}, {args.serve_workers} uvicorn worker(s), pid {server.pid}",
            file=sys.stderr,
        )
        check_lists(url, tokens, args.enrolled)
        began = time.perf_counter()
        # The default event's page takes no enrollment until an organizer opens it.
        processes.run(["-q", "events", "edit", "default", "--self-enrollment", "on"], "open")
        galleries = enroll_participants(url, args.participants)
        zipped = match_zip_photos(tmp / "data" / "photoctl.db", galleries[0], args.zip_photos)
        print(
            f"setup: {args.participants} participants enrolled through /api/e/default in "
            f"{time.perf_counter() - began:.1f} s; the first matched to {zipped} more photos",
            file=sys.stderr,
        )
        requests = targets(tokens, galleries)
        warm_up(processes, url, requests, args, server.pid)
        print(route_report(route_costs(processes, url, requests, args, server.pid)), flush=True)
        if args.routes_only:
            return 0

        with py_spy(processes, server, args.py_spy, "idle"):
            idle = run_window(processes, "idle", url, requests, args, server.pid)
        print(idle.report())

        load, drained = under_load(processes, figures, url, requests, args, tmp, server)
        print(load.report())
        print(
            f"  queue: workers held a job {drained['workers_lead_seconds']:.1f} s after start "
            f"(before the window); {drained['done_in_window']} photos done during the window "
            f"({drained['done_in_window'] / args.duration:.2f}/s), queued "
            f"{drained['queued_at_start']} at start, {drained['queued_at_end']} at the end, "
            f"{drained['failed']} failed"
        )
        print(f"  CPU priorities: {drained['priorities']}")
        ingest_time = drained["ingest_seconds"]
        print(
            f"  concurrent ingest: {drained['enqueued_by_ingest']} jobs enqueued, "
            + (
                f"ran from t = {drained['ingest_began_in_window']:.1f} s of the window for "
                f"{ingest_time:.1f} s (exit {drained['ingest_exit']})"
                if ingest_time is not None
                else "did not finish (stopped)"
            )
        )
        ratio = load.p99 / idle.p99 if idle.p99 > 0 else float("inf")
        print(f"  p99 under load / p99 idle: {ratio:.2f}")

        sent = uploads(url, tokens, args)
        mode = (
            "sequential" if args.upload_concurrency == 1 else f"{args.upload_concurrency} at a time"
        )
        errors = sum(sent["errors"].values())
        print(
            f"uploads: {args.uploads} x {sent['mean_kb']:.0f} kB JPEG, {mode}, over "
            f"{min(len(tokens), args.uploads)} users, workers stopped: {sent['total']:.2f} s "
            f"total, per upload p50 {sent['p50'] * 1000:.1f} ms, max {sent['max'] * 1000:.1f} ms, "
            f"errors {errors}" + (f" {sent['errors']}" if errors else "")
        )
        zipped_figures = zip_download(url, galleries[0], server.pid)
        rss_growth = zipped_figures["rss_peak"] - zipped_figures["rss_before"]
        print(
            f"zip: {zipped} previews, {zipped_figures['mb']:.1f} MB: first byte after "
            f"{zipped_figures['first_byte_ms']:.1f} ms, all in {zipped_figures['total_s']:.2f} s; "
            f"serve RSS {zipped_figures['rss_before']:.0f} MB before, "
            f"{zipped_figures['rss_peak']:.0f} MB at most while streaming, "
            f"{zipped_figures['rss_after']:.0f} MB after"
        )
    finally:
        processes.stop_all()

    checks = [
        (
            f"p99 under load <= {TARGET_P99_MS:g} ms",
            load.p99 <= TARGET_P99_MS,
            f"{load.p99:.1f} ms",
        ),
        ("no errors under load", load.error_count() == 0, str(load.error_count())),
        (f"p99 load/idle <= {TARGET_P99_RATIO:g}", ratio <= TARGET_P99_RATIO, f"{ratio:.2f}"),
        (
            f"{args.uploads} uploads <= {TARGET_UPLOAD_SECONDS:g} s",
            sent["total"] <= TARGET_UPLOAD_SECONDS and errors == 0,
            f"{sent['total']:.2f} s, {errors} errors",
        ),
        (
            f"zip first byte <= {TARGET_ZIP_FIRST_BYTE_MS:g} ms",
            zipped_figures["first_byte_ms"] <= TARGET_ZIP_FIRST_BYTE_MS,
            f"{zipped_figures['first_byte_ms']:.1f} ms",
        ),
        (
            f"serve grows < {ZIP_RSS_GROWTH_MB:g} MB while the zip streams",
            rss_growth < ZIP_RSS_GROWTH_MB,
            f"{rss_growth:+.1f} MB",
        ),
    ]
    disturbed = [window.name for window in (idle, load) if window.disturbed]
    print(
        "targets:"
        + (
            f" (window(s) {', '.join(disturbed)} disturbed by other processes: run again on a "
            "quiet machine)"
            if disturbed
            else ""
        )
    )
    for name, ok, value in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {name}: {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (top of this file) for what each phase measures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=200.0, help="GET requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--users", type=int, default=50, help="users, requested round robin")
    parser.add_argument("--enrolled", type=int, default=10, help="users enrolled with a face")
    parser.add_argument("--serve-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--workers", type=int, default=2, help="photoctl work -n, under load")
    parser.add_argument("--photos", type=int, default=300, help="queued photos drained under load")
    parser.add_argument(
        "--ingest-batch", type=int, default=100, help="photos ingested concurrently under load"
    )
    parser.add_argument(
        "--face-every", type=int, default=3, help="one generated photo in N has a real face"
    )
    parser.add_argument(
        "--initial-scenery", type=int, default=16, help="initial photos without faces"
    )
    parser.add_argument(
        "--participants", type=int, default=10, help="participants enrolled (gallery routes)"
    )
    parser.add_argument("--zip-photos", type=int, default=100, help="previews in the zip")
    parser.add_argument("--uploads", type=int, default=100, help="POST /api/photos uploads")
    parser.add_argument(
        "--upload-concurrency", type=int, default=1, help="uploads in flight (1 = sequential)"
    )
    parser.add_argument(
        "--route-rate", type=float, default=100.0, help="requests/s of each per-route window"
    )
    parser.add_argument(
        "--route-seconds", type=float, default=5.0, help="seconds of each per-route window"
    )
    parser.add_argument(
        "--routes-only",
        action="store_true",
        help="stop after the per-route windows (no idle, load, upload or zip phases)",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="the load generator's keep-alive connections"
    )
    parser.add_argument(
        "--generator-nice",
        type=int,
        default=-5,
        help="nice value of the load generator process and its autogroup (root may go below 0)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per GET")
    parser.add_argument(
        "--work-under-shell",
        action="store_true",
        help="start photoctl work under `sh -c`, so that it does not lead its session (see "
        "the module docstring)",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="run serve under scripts/_serve_probe.py and report its garbage collections and "
        "event-loop stalls in each window (one uvicorn worker only)",
    )
    parser.add_argument("--py-spy", type=Path, metavar="DIR", help="profile serve into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    limits = {
        "rate": (1, 2000),
        "route_rate": (1, 2000),
        "route_seconds": (1, 120),
        "duration": (1, 600),
        "users": (1, 500),
        "serve_workers": (1, 8),
        "workers": (1, 8),
        "photos": (0, 5000),
        "ingest_batch": (0, 5000),
        "uploads": (0, 1000),
        "upload_concurrency": (1, 32),
        "connections": (1, 256),
        "generator_nice": (-20, 19),
        "participants": (1, 30),
        "zip_photos": (1, 1000),
    }
    for name, (low, high) in limits.items():
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be between {low} and {high}")
    if not 0 <= args.enrolled <= args.users:
        parser.error("--enrolled must be between 0 and --users")
    if args.probe and args.serve_workers != 1:
        parser.error("--probe needs --serve-workers 1")
    if args.rate * args.duration > 200_000:
        parser.error("--rate x --duration is capped at 200,000 requests")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.py_spy is not None:
        args.py_spy = args.py_spy.resolve()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="photoctl-bench-serve-"))
    print(f"working in {tmp}", file=sys.stderr)
    try:
        return run(args, tmp)
    except BenchError as error:
        print(f"bench_serve: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_serve: interrupted; every process started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
