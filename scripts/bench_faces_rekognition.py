"""Benchmark part 2 of scripts/bench_faces.py: Rekognition, calls/s accepted by an endpoint with
a quota, and how fast the rate recovers after a burst of throttling.

  1. start testkit/fake_rekognition.py as a subprocess (--tps RK_TPS --latency RK_LATENCY);
  2. enroll one user with a colour-square selfie, ingest RK_COUNT colour-square photos (one face
     each, colours from a palette, so each photo costs IndexFaces + SearchFaces), reset the
     endpoint's records;
  3. run `photoctl -q --engine rekognition work -n RK_WORKERS --until-empty` with
     PHOTOCTL_REKOGNITION_MAX_TPS=RK_TPS, AWS_CONCURRENT_REQUESTS=RK_CONCURRENCY and fake AWS
     credentials; then read the endpoint's records (GET /_fake/stats) and the job table:
     accepted calls/s over the photo phase (first IndexFaces to last accepted call, i.e. without
     the supervisor's check and the workers' start-up), throttled answers, the limiter's own
     slow-downs (its warnings on stderr), gaps between arrivals, calls per second, and failed
     jobs (must be 0);
  4. unless --rk-burst 0: once RK_BURST_AFTER calls were accepted, the endpoint throttles every
     request for RK_BURST seconds (POST /_fake/config throttle_for_seconds). The steady rate is
     measured before the burst; the recovery is the time from the burst's last throttled answer
     until a 1 s window holds >= 90 % of the quota in accepted calls.
  5. with --rk-blip-every S: until the burst, the endpoint throttles one request every S seconds
     (POST /_fake/config throttle_next), the isolated throttles arrival jitter makes on a busy
     machine, so that what each costs the steady rate can be measured on a quiet one.

Targets (issue 11): at a 50 TPS quota and 300 ms latency, `work -n 2` accepts >= 95 % of the quota
(47.5 calls/s) with no throttled answer before the burst, no failed or retried job and never more
than max_concurrency calls in flight; after the burst, >= 90 % of the quota again within 10 s.

A module of its own so the local part (dlib, image generation) and this one (a fake HTTP
endpoint) can be read apart; bench_faces.py keeps the command line and runs either or both:

    .venv/bin/python scripts/bench_faces.py --part rekognition --rk-count 150
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from _bench import (
    BUSY_CORES,
    REPO,
    JobFigures,
    LoadMeter,
    clean_env,
    job_figures,
    require,
    run_photoctl,
    settle_tree,
    wait_for_quiet,
)

from testkit.fake_rekognition import AWS_ENV, PALETTE, make_face_image

TARGET_QUOTA_FRACTION = 0.95  # accepted calls/s over the quota, before the burst
RECOVERY_FRACTION = 0.90  # of the quota, in a 1 s window after the burst ...
RECOVERY_TARGET_SECONDS = 10.0  # ... within this long


@contextlib.contextmanager
def fake_endpoint(tps: float, latency: float) -> Iterator[tuple[str, subprocess.Popen]]:
    """testkit/fake_rekognition.py as a subprocess; yields (its URL, the process)."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "testkit" / "fake_rekognition.py"),
            "--port",
            "0",
            "--tps",
            str(tps),
            "--latency",
            str(latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip() if process.stdout else ""
        if not url.startswith("http"):
            sys.exit(f"the fake endpoint did not start (printed {url!r})")
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()


def fake_request(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, method="GET" if data is None else "POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def write_face_photos(root: Path, count: int, width_px: int = 800) -> None:
    root.mkdir(parents=True)
    for index in range(count):
        colour = PALETTE[index % len(PALETTE)]
        # Distinct bytes for a repeated colour: one pixel wider each time round the palette.
        size = (width_px + index // len(PALETTE), width_px * 3 // 4)
        (root / f"face_{index:04d}.jpg").write_bytes(make_face_image([colour], size))
    settle_tree(root)


def quantiles(values: Sequence[float], points: Sequence[float]) -> list[float]:
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, int(p * len(ordered)))] for p in points]


@dataclass(frozen=True)
class RekognitionRun:
    stats: dict  # GET /_fake/stats after the run
    jobs: JobFigures
    load: LoadMeter
    done: subprocess.CompletedProcess[str]
    wall_seconds: float
    started: float  # time.monotonic(), the fake's clock too (system-wide on Linux)
    ended: float
    burst_at: float | None  # when the endpoint was told to throttle everything


def run_rekognition_cli(
    photos: Path,
    selfie: Path,
    data_dir: Path,
    env: dict[str, str],
    url: str,
    fake_pid: int,
    args: argparse.Namespace,
) -> RekognitionRun:
    _, done = run_photoctl(
        data_dir, ["users", "add", "user0", "--selfie", str(selfie)], env, engine="rekognition"
    )
    require(done, "photoctl users add (rekognition)")
    _, done = run_photoctl(data_dir, ["ingest", "--json", str(photos)], env)
    require(done, "photoctl ingest")
    # Let the quota window of the enrollment calls pass, then count only the work's calls.
    time.sleep(1.1)
    wait_for_quiet(args.quiet_wait, "photoctl work")
    fake_request(url, "/_fake/reset", {})
    started = time.monotonic()
    finished = threading.Event()
    burst_at: list[float] = []
    burst = threading.Thread(
        target=burst_when_busy, args=(url, args, finished, burst_at), daemon=True
    )
    if args.rk_burst > 0 or args.rk_blip_every > 0:
        burst.start()
    with LoadMeter([fake_pid]) as load:
        wall, done = run_photoctl(
            data_dir,
            ["work", "-n", str(args.rk_workers), "--until-empty"],
            env,
            engine="rekognition",
        )
    ended = time.monotonic()
    finished.set()
    if done.returncode not in (0, 1):
        require(done, "photoctl work (rekognition)")
    stats = fake_request(url, "/_fake/stats")
    return RekognitionRun(
        stats,
        job_figures(data_dir),
        load,
        done,
        wall,
        started,
        ended,
        burst_at[0] if burst_at else None,
    )


def burst_when_busy(
    url: str, args: argparse.Namespace, finished: threading.Event, burst_at: list[float]
) -> None:
    """Once RK_BURST_AFTER calls were accepted, make the endpoint throttle for RK_BURST s; until
    then, with RK_BLIP_EVERY, have it throttle one request that often (a blip)."""
    next_blip = None
    while not finished.wait(0.05 if args.rk_blip_every > 0 else 0.25):
        # Counters only: the records grow with the run, and the endpoint's CPU counts as ours.
        accepted = fake_request(url, "/_fake/stats?records=0")["accepted"]
        if args.rk_burst > 0 and accepted >= args.rk_burst_after:
            burst_at.append(time.monotonic())
            fake_request(url, "/_fake/config", {"throttle_for_seconds": args.rk_burst})
            return
        if args.rk_blip_every > 0 and accepted > 0:
            now = time.monotonic()
            if next_blip is None:
                next_blip = now + args.rk_blip_every  # never two closer than that
            elif now >= next_blip:
                fake_request(url, "/_fake/config", {"throttle_next": 1})
                next_blip += args.rk_blip_every


# Calls that started up to this long after the configured burst still count as its throttles:
# the watcher sets the burst a moment after it decided to.
BURST_SLACK_SECONDS = 0.5


def rekognition_figures(
    records: Sequence[Sequence],
    quota: float,
    burst_at: float | None = None,
    burst_seconds: float = float("inf"),
) -> dict:
    """Accepted calls/s over the steady photo phase (first IndexFaces to the burst or the last
    accepted call, i.e. without the workers' start-up), throttled answers before the burst, and
    the recovery after it (see the module docstring). The burst's throttles are those that
    started while the endpoint was told to throttle (plus BURST_SLACK_SECONDS for the watcher's
    lag); a throttle after it (arrival jitter) is counted apart and does not move its end."""
    burst_start = burst_at if burst_at is not None else float("inf")
    burst_stop = burst_start + burst_seconds + BURST_SLACK_SECONDS
    accepted = sorted(r[0] for r in records if not r[3])
    throttled_before = sum(1 for r in records if r[3] and r[0] < burst_start)
    throttled_after = sum(1 for r in records if r[3] and r[0] > burst_stop)
    throttled = sorted(r[0] for r in records if r[3] and burst_start <= r[0] <= burst_stop)
    first_index = min((r[0] for r in records if r[2] == "IndexFaces"), default=None)
    phase = [
        start
        for start in accepted
        if first_index is not None and first_index <= start < burst_start
    ]
    span = phase[-1] - phase[0] if len(phase) > 1 else 0.0
    steady = (len(phase) - 1) / span if span > 0 else 0.0
    burst_end = throttled[-1] if throttled else None
    return {
        "phase_calls": len(phase),
        "phase_seconds": span,
        "calls_per_s": steady if span > 0 else float("nan"),
        "throttled": len(throttled),
        "throttled_before_burst": throttled_before,
        "throttled_after_burst": throttled_after,
        "burst_seconds": throttled[-1] - throttled[0] if throttled else 0.0,
        "recovery_seconds": recovery_seconds(accepted, burst_end, RECOVERY_FRACTION * quota),
        # Back to 90 % of what the run reached before the burst (when that was under the quota).
        "recovery_to_steady_seconds": recovery_seconds(
            accepted, burst_end, RECOVERY_FRACTION * steady
        ),
    }


def recovery_seconds(
    accepted: Sequence[float], burst_end: float | None, needed: float
) -> float | None:
    """Seconds from the burst's end until a 1 s window holds ``needed`` accepted calls."""
    if burst_end is None or needed <= 0:
        return None
    for index in range(bisect.bisect_right(accepted, burst_end), len(accepted)):
        window_end = accepted[index] + 1.0
        if bisect.bisect_left(accepted, window_end) - index >= needed:
            return window_end - burst_end
    return None


def part_rekognition(args: argparse.Namespace, work: Path) -> dict:
    print(
        f"\n== rekognition: fake endpoint quota {args.rk_tps:g} TPS, latency "
        f"{args.rk_latency:g} s; {args.rk_count} photos of {args.rk_photo_px} px, 1 face each; "
        f"work -n {args.rk_workers}, "
        f"max_tps {args.rk_max_tps:g}, concurrency {args.rk_concurrency}",
        flush=True,
    )
    photos = work / "faces"
    write_face_photos(photos, args.rk_count, args.rk_photo_px)
    selfie = work / "selfie.jpg"
    selfie.write_bytes(make_face_image([PALETTE[0]], (640, 640)))
    attempts: list[RekognitionRun] = []
    with fake_endpoint(args.rk_tps, args.rk_latency) as (url, process):
        env = clean_env(
            {
                **AWS_ENV,
                "PHOTOCTL_REKOGNITION_ENDPOINT_URL": url,
                "PHOTOCTL_REKOGNITION_MAX_TPS": f"{args.rk_max_tps:g}",
                "AWS_CONCURRENT_REQUESTS": str(args.rk_concurrency),
            },
            drop_aws=True,
        )
        for attempt in range(1, args.busy_retries + 2):
            fake_request(url, "/_fake/reset", {"all": True})  # no collection left from before
            run = run_rekognition_cli(
                photos, selfie, work / f"data-rekognition-{attempt}", env, url, process.pid, args
            )
            attempts.append(run)
            busy = run.load.others / max(run.load.wall, 1e-9)
            headline = rekognition_figures(
                run.stats["records"], args.rk_tps, run.burst_at, args.rk_burst
            )
            print(
                f"  run {attempt}: {headline['calls_per_s']:.2f} calls/s before the burst, "
                f"{headline['throttled']} throttled, {run.jobs.failed} failed jobs; other "
                f"processes used {busy:.2f} cores meanwhile",
                flush=True,
            )
            if busy < BUSY_CORES:
                break
            if attempt <= args.busy_retries:
                print(f"  (over {BUSY_CORES} cores: the machine was shared; running it again)")
    chosen = min(attempts, key=lambda r: r.load.others / max(r.load.wall, 1e-9))
    if len(attempts) > 1:
        print(f"  figures below: run {attempts.index(chosen) + 1}, the one least disturbed")
    stats, jobs, load, done = chosen.stats, chosen.jobs, chosen.load, chosen.done
    wall, started, ended = chosen.wall_seconds, chosen.started, chosen.ended
    records = [tuple(r) for r in stats["records"]]  # (start, end, operation, throttled)
    accepted = sorted(r[0] for r in records if not r[3])
    throttled = [r for r in records if r[3]]
    arrivals = sorted(r[0] for r in records)
    operations = Counter(r[2] for r in records if not r[3])
    limiter_warnings = done.stderr.count("throttled: shared rate lowered")
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    figures = rekognition_figures(records, args.rk_tps, chosen.burst_at, args.rk_burst)
    rate, phase_span = figures["calls_per_s"], figures["phase_seconds"]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    durations = [r[1] - r[0] for r in records if not r[3]]
    print(f"  {load.describe()} (the endpoint's CPU counted as this benchmark's)")
    # What decides whether the quota fits the machine, whatever else runs on it: at 47.5 calls/s
    # on 2 cores the workers and the endpoint may spend at most ~42 CPU-s per 1,000 calls.
    cpu_per_1000 = 1000 * load.own / max(len(accepted), 1)
    print(
        f"  CPU per 1,000 accepted calls (workers, supervisor and endpoint, start-up included): "
        f"{cpu_per_1000:.1f} s, i.e. {args.rk_tps * cpu_per_1000 / 1000:.2f} cores at "
        f"{args.rk_tps:g} calls/s"
    )
    print(
        f"  jobs: {jobs.done} done, {jobs.failed} failed, {jobs.retried} retried; "
        f"{jobs.faces} faces, {jobs.matches} matches; job table {jobs.span_seconds:.2f} s = "
        f"{jobs.rate():.2f} photos/s; wall {wall:.2f} s"
    )
    if jobs.errors:
        print(f"  errors: {jobs.errors}")
    print(f"  accepted calls by operation: {dict(sorted(operations.items()))}")
    print(
        f"  accepted {len(accepted)} calls: steady photo phase (first IndexFaces to the burst) "
        f"{figures['phase_calls']} in {phase_span:.2f} s = {rate:.2f} calls/s = "
        f"{rate / args.rk_tps:.1%} of the quota; first to last call "
        f"{span:.2f} s = {(len(accepted) - 1) / span if span else 0:.2f} calls/s; over the work "
        f"wall time {len(accepted) / (ended - started):.2f} calls/s"
    )
    print(
        f"  throttled answers at the endpoint: {len(throttled)}; limiter slow-downs logged by "
        f"workers: {limiter_warnings}; max accepted in any 1 s window: "
        f"{stats['max_calls_in_any_window']}; max in flight: {stats['max_in_flight']}"
    )
    if gaps:
        p1, p10, p50, p90 = quantiles(gaps, (0.01, 0.10, 0.50, 0.90))
        print(
            f"  gaps between arrivals (limiter spacing {1000 / args.rk_max_tps:.1f} ms): "
            f"p1 {p1 * 1000:.1f}, p10 {p10 * 1000:.1f}, p50 {p50 * 1000:.1f}, "
            f"p90 {p90 * 1000:.1f} ms; call time at the endpoint p50 "
            f"{statistics.median(durations) * 1000:.0f} ms"
        )
    if accepted:
        # Calls/s in each whole second of the run: shows dips after throttles.
        seconds = Counter(int(start - accepted[0]) for start in accepted)
        last = max(seconds)
        per_second = [seconds.get(s, 0) for s in range(last)]  # the last second is partial
        print(f"  accepted per second: {per_second}")
        if throttled:
            when = sorted(round(r[0] - accepted[0], 2) for r in throttled)
            print(f"  throttled at (s from first call): {when[:40]}")
    in_flight_ok = stats["max_in_flight"] <= args.rk_concurrency
    target = TARGET_QUOTA_FRACTION * args.rk_tps
    meets = rate >= target and jobs.failed == 0 and jobs.retried == 0 and in_flight_ok
    print(
        f"  {'meets' if meets else 'MISSES'} >= {target:g} calls/s ({TARGET_QUOTA_FRACTION:.0%} "
        f"of {args.rk_tps:g} TPS) with 0 failed or retried jobs and <= {args.rk_concurrency} in "
        f"flight: {rate:.2f} calls/s = {rate / args.rk_tps:.1%}, {jobs.failed} failed, "
        f"{jobs.retried} retried, max {stats['max_in_flight']} in flight, "
        f"{figures['throttled_before_burst']} throttled before the burst",
        flush=True,
    )
    recovery = figures["recovery_seconds"]
    if args.rk_burst > 0:
        recovered = recovery is not None and recovery <= RECOVERY_TARGET_SECONDS
        print(
            f"  burst: the endpoint throttled {figures['throttled']} calls over "
            f"{figures['burst_seconds']:.2f} s ({figures['throttled_after_burst']} more after "
            f"it, from arrival jitter); back to >= {RECOVERY_FRACTION:.0%} of the quota "
            + (f"{recovery:.2f} s after it" if recovery is not None else "never")
            + f": {'meets' if recovered else 'MISSES'} <= {RECOVERY_TARGET_SECONDS:g} s; back to "
            f">= {RECOVERY_FRACTION:.0%} of the rate before the burst ({rate:.1f} calls/s) "
            + (
                f"{figures['recovery_to_steady_seconds']:.2f} s after it"
                if figures["recovery_to_steady_seconds"] is not None
                else "never"
            ),
            flush=True,
        )
    return {
        "accepted": len(accepted),
        "calls_per_s": rate,
        "throttled": len(throttled),
        "limiter_slowdowns": limiter_warnings,
        "quota_fraction": rate / args.rk_tps,
        "max_in_flight": stats["max_in_flight"],
        "recovery_seconds": recovery,
        "failed": jobs.failed,
        "retried": jobs.retried,
        "wall_seconds": wall,
        "other_cores_during_work": load.others / max(load.wall, 1e-9),
        "cpu_seconds_per_1000_calls": cpu_per_1000,
    }


if __name__ == "__main__":
    # One command line for both parts: this file alone runs bench_faces.py --part rekognition.
    import bench_faces

    sys.argv[1:1] = ["--part", "rekognition"]
    bench_faces.main()
