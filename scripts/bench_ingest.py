"""Benchmark `photoctl ingest` against a plain `sha256sum` of the same files.

Generates COUNT small distinct JPEGs (640x480, quality 80, mtime backdated so ingest takes them
as settled) in a temporary tree, reads every file once to warm the page cache, then measures in
the same run, REPEAT times each (interleaved, so drift hits every figure alike):

  sha256sum   `find ROOT -type f -print0 | xargs -0 sha256sum > /dev/null`: one process at a
              time, which is what "sha256sum over the files" means to an operator. This is the
              baseline of the target (ingest within 2x). For reference the same is also run as
              `xargs -0 -P NPROC -n CHUNK sha256sum` (every core busy), since ingest hashes in
              threads on both cores too.
  in-process  photoctl.ingest.ingest_paths into a fresh SQLite database (schema created
              before the clock starts; walking, hashing and registering are timed).
  CLI         `photoctl -q ingest --json ROOT` as a subprocess into a fresh data dir: wall time
              including interpreter start-up, imports and schema creation.
  re-ingest   the same again over the unchanged tree (nothing new: stat only, no reads), both
              in-process and through the CLI.

Everything is created under a temporary directory that is removed at the end. Nothing outside
it is read or written: the CLI runs with that directory as its working directory and with the
PHOTOCTL_* variables of this environment removed.

    .venv/bin/python scripts/bench_ingest.py --count 5000 --repeat 3
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import multiprocessing
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for testkit.photos, also in multiprocessing children

from _bench import clean_env, cli_command, load_average  # noqa: E402

from photoctl import db  # noqa: E402
from photoctl.config import Settings  # noqa: E402
from photoctl.ingest import IngestReport, ingest_paths  # noqa: E402

PER_FOLDER = 100
SETTLED_AGE_SECONDS = 120
TARGET_RATIO = 2.0


@dataclass
class Series:
    """Seconds measured for one figure over the repeats."""

    label: str
    seconds: list[float] = field(default_factory=list)
    note: str = ""

    def best(self) -> float:
        return min(self.seconds)

    def median(self) -> float:
        return statistics.median(self.seconds)


def _write_one(job: tuple[str, int, int, tuple[int, int]]) -> int:
    from testkit.photos import jpeg_bytes

    path, seed, quality, size = job
    data = jpeg_bytes(size, seed, quality=quality)
    with open(path, "wb") as handle:
        handle.write(data)
    return len(data)


def generate_tree(root: Path, count: int, quality: int, size: tuple[int, int]) -> int:
    """COUNT distinct settled JPEGs under root, PER_FOLDER per sub-folder; returns total bytes."""
    jobs = []
    for index in range(count):
        folder = root / f"set{index // PER_FOLDER:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((str(folder / f"IMG_{index:06d}.jpg"), index, quality, size))
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 2) as pool:
        total = sum(pool.imap_unordered(_write_one, jobs, chunksize=64))
    past = time.time() - SETTLED_AGE_SECONDS
    for path, *_ in jobs:
        os.utime(path, (past, past))
    return total


def warm_cache(root: Path) -> int:
    """Read every file once so that every measurement starts from the page cache."""
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(directory, name), "rb") as handle:
                total += len(handle.read())
    return total


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def sha256sum_serial(root: Path) -> None:
    subprocess.run(
        f"find {_quote(root)} -type f -print0 | xargs -0 sha256sum > /dev/null",
        shell=True,
        check=True,
    )


def sha256sum_parallel(root: Path, count: int, jobs: int) -> None:
    chunk = max(1, math.ceil(count / jobs))
    subprocess.run(
        f"find {_quote(root)} -type f -print0 "
        f"| xargs -0 -P {jobs} -n {chunk} sha256sum > /dev/null",
        shell=True,
        check=True,
    )


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def bench_settings(data_dir: Path) -> Settings:
    """Defaults only (no config.ini, no environment), SQLite in data_dir."""
    url = f"sqlite:///{(data_dir / 'photoctl.db').resolve()}"
    return Settings(data_dir=data_dir).replace("database", url=url)


def ingest_in_process(
    root: Path, data_dir: Path, profile: Path | None = None
) -> tuple[float, IngestReport, float, IngestReport]:
    """(seconds, report) of a first ingest into a fresh database, then of a re-ingest."""
    settings = bench_settings(data_dir)
    engine = db.make_engine(settings)
    try:
        db.ensure_schema(engine)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        first_s, first = timed(lambda: ingest_paths(engine, settings, [str(root)]))
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(profile))
        again_s, again = timed(lambda: ingest_paths(engine, settings, [str(root)]))
    finally:
        engine.dispose()
    return first_s, first, again_s, again  # type: ignore[return-value]


def ingest_cli(root: Path, data_dir: Path) -> tuple[float, dict]:
    """(wall seconds, --json summary) of `photoctl ingest` as a subprocess."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(data_dir / 'photoctl.db').resolve()}"
    command = [
        *cli_command(),
        "-q",
        "--data-dir",
        str(data_dir),
        "--database-url",
        url,
        "ingest",
        "--json",
        str(root),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=data_dir, env=clean_env(), capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"photoctl ingest failed ({done.returncode}):\n{done.stderr}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def check(report_new: int, expected: int, what: str) -> None:
    if report_new != expected:
        sys.exit(f"{what}: expected {expected} new photos, got {report_new}")


def run(args: argparse.Namespace) -> None:
    cpus = os.cpu_count() or 2
    with tempfile.TemporaryDirectory(prefix="photoctl-bench-ingest-") as temp:
        work = Path(temp)
        root = work / "photos"
        width, height = args.size
        print(
            f"generating {args.count} JPEGs {width}x{height} q{args.quality} in {root} ...",
            flush=True,
        )
        gen_s, total_bytes = timed(lambda: generate_tree(root, args.count, args.quality, args.size))
        print(
            f"  {total_bytes / 1e6:.1f} MB, {total_bytes / args.count / 1024:.1f} KiB average, "
            f"in {gen_s:.1f} s",
            flush=True,
        )
        warm_cache(root)
        series = {
            "sha": Series("sha256sum, 1 process (baseline)", note="find | xargs -0 sha256sum"),
            "sha_par": Series(
                f"sha256sum, {cpus} processes", note=f"xargs -0 -P {cpus} -n CHUNK sha256sum"
            ),
            "inproc": Series("ingest_paths in-process", note="fresh SQLite, schema pre-created"),
            "cli": Series("photoctl ingest CLI", note="subprocess wall, fresh data dir"),
            "cli_inner": Series("  (its own 'seconds')", note="time reported by the command"),
            "again": Series("re-ingest in-process", note="unchanged tree, nothing new"),
            "again_cli": Series("re-ingest CLI", note="subprocess wall, unchanged tree"),
        }
        for attempt in range(1, args.repeat + 1):
            print(f"run {attempt}/{args.repeat} (load average {load_average()})", flush=True)
            series["sha"].seconds.append(timed(lambda: sha256sum_serial(root))[0])
            series["sha_par"].seconds.append(
                timed(lambda: sha256sum_parallel(root, args.count, cpus))[0]
            )
            data_dir = work / f"data-inproc-{attempt}"
            data_dir.mkdir()
            profile = work / "ingest.prof" if args.profile and attempt == 1 else None
            first_s, first, again_s, again = ingest_in_process(root, data_dir, profile)
            check(first.new, args.count, "in-process ingest")
            check(again.new, 0, "in-process re-ingest")
            series["inproc"].seconds.append(first_s)
            series["again"].seconds.append(again_s)
            shutil.rmtree(data_dir)
            cli_dir = work / f"data-cli-{attempt}"
            wall, summary = ingest_cli(root, cli_dir)
            check(summary["new"], args.count, "CLI ingest")
            series["cli"].seconds.append(wall)
            series["cli_inner"].seconds.append(summary["seconds"])
            wall_again, summary_again = ingest_cli(root, cli_dir)
            check(summary_again["new"], 0, "CLI re-ingest")
            series["again_cli"].seconds.append(wall_again)
            shutil.rmtree(cli_dir)
            for key in series:
                seconds = series[key].seconds[-1]
                print(
                    f"  {series[key].label:34} {seconds:7.3f} s  {args.count / seconds:9.0f} /s",
                    flush=True,
                )
            if profile:
                print_profile(profile, args.profile_lines)
        report(series, args, cpus)


def print_profile(path: Path, lines: int) -> None:
    print(f"\ncProfile of the first in-process ingest (top {lines} by cumulative time):")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(lines)


def report(series: dict[str, Series], args: argparse.Namespace, cpus: int) -> None:
    count = args.count
    print()
    print(
        f"{count} photos, {args.repeat} runs, {cpus} CPUs, load average {load_average()} at the "
        "end; photos/s from the best and the median run"
    )
    print(f"{'figure':36} {'best s':>8} {'best /s':>9} {'median /s':>10}  how")
    for item in series.values():
        print(
            f"{item.label:36} {item.best():8.3f} {count / item.best():9.0f} "
            f"{count / item.median():10.0f}  {item.note}"
        )
    print()
    # Each run measured every figure back to back, so a run's ratio compares like with like
    # even when other work on the machine comes and goes; the median of those ratios is reported.
    for key in ("inproc", "cli"):
        mine = series[key].seconds
        ratio = statistics.median(t / b for t, b in zip(mine, series["sha"].seconds, strict=True))
        ratio_par = statistics.median(
            t / b for t, b in zip(mine, series["sha_par"].seconds, strict=True)
        )
        verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
        print(
            f"{series[key].label}: {ratio:.2f}x the time of sha256sum (1 process), "
            f"{ratio_par:.2f}x sha256sum on {cpus} processes; {verdict} the "
            f"{TARGET_RATIO:g}x target (median of the per-run ratios)"
        )


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 640x480, got {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError("width and height must be at least 16")
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000, help="photos to generate (5000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each figure (3)")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality (80)")
    parser.add_argument(
        "--size", type=parse_size, default=(640, 480), help="photo size WxH (640x480)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the first in-process ingest and print the top functions",
    )
    parser.add_argument("--profile-lines", type=int, default=30, help="functions shown (30)")
    args = parser.parse_args()
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be at least 1")
    run(args)


if __name__ == "__main__":
    main()
