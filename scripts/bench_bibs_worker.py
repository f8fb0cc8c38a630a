"""What reading bibs adds to a photo job, measured in the real worker path (`photoctl work`).

1. builds --photos 24 MP race photos (6000x4000 JPEG q90, testkit.bibs.race_photo: 2-5 runners,
   digits 15-120 px, distractors; --dark-cards: a share of white digits on coloured cards);
2. two fresh SQLite data dirs, the same photos ingested into an event with bibs off and one
   with bibs on; `photoctl --engine ENGINE work -n 1 --until-empty` drains each, the CPU
   seconds of its whole process tree measured (minus a run on an empty queue: start-up);
3. prints CPU ms per photo without and with bibs, the difference (target: <= 300 ms added, one
   core), and the bib step's own CPU per photo as the workers logged it (`[Bibs] photo N: ...
   ms`, the step's thread time: the reader and the rules, not the larger decode), with the
   bibs found against the truth.

Machine load distorts CPU figures less than wall time, but a busy machine still slows caches:
the load during each run is printed beside it.

    .venv/bin/python scripts/bench_bibs_worker.py --photos 12
    .venv/bin/python scripts/bench_bibs_worker.py --photos 12 --dark-cards 0.5 --light-on-dark
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
from pathlib import Path

from _bench import LoadMeter, clean_env, load_average, require, run_photoctl, settle_tree

from testkit.bibs import race_photo


def drain(data_dir: Path, photos: Path, bibs: bool, args: argparse.Namespace) -> tuple:
    log_file = data_dir.parent / f"{data_dir.name}.log"
    env = clean_env(
        {
            "PHOTOCTL_LOG_FILE": str(log_file),
            "PHOTOCTL_LOG_LEVEL": "debug",
            "PHOTOCTL_BIBS_LIGHT_ON_DARK": "true" if args.light_on_dark else "false",
            "PHOTOCTL_QUEUE_WORKER_NICE": "0",
        },
        drop_aws=True,
    )
    create = ["events", "create", "race", "--title", "Race", *(["--bibs"] if bibs else [])]
    require(run_photoctl(data_dir, create, env)[1], "events create")
    require(run_photoctl(data_dir, ["ingest", str(photos), "--event", "race"], env)[1], "ingest")
    empty = data_dir.with_name(data_dir.name + "-empty")
    require(run_photoctl(empty, create, env)[1], "events create")
    work = ["work", "-n", "1", "--until-empty"]
    with LoadMeter() as idle:
        require(run_photoctl(empty, work, env, engine=args.engine)[1], "work (empty)")
    with LoadMeter() as load:
        require(run_photoctl(data_dir, work, env, engine=args.engine)[1], "work")
    step_ms = [
        float(m[1])
        for m in re.finditer(r"\[Bibs\] photo \d+: .*?([\d.]+) ms", log_file.read_text())
    ]
    return max(0.0, load.own - idle.own) / args.photos, load, step_ms


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=12, help="24 MP photos (12)")
    parser.add_argument("--engine", default="none", help="face engine: none or local (none)")
    parser.add_argument("--dark-cards", type=float, default=0.0, help="share of dark cards (0)")
    parser.add_argument("--light-on-dark", action="store_true", help="bibs.light_on_dark on")
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="photoctl-bench-bibs-worker-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        shown = 0
        for index in range(args.photos):
            photo = race_photo(args.seed + index, (6000, 4000), dark_cards=args.dark_cards)
            photo.image.save(photos / f"race-{index:03d}.jpg", quality=90)
            shown += len(photo.bibs)
        settle_tree(photos)
        print(
            f"{args.photos} photos 6000x4000, {shown} bibs shown; engine {args.engine}; "
            f"dark cards {args.dark_cards:.0%}; light_on_dark {args.light_on_dark}; "
            f"load average before: {load_average(all_three=True)}",
            flush=True,
        )
        without, load_off, _ = drain(work / "off", photos, False, args)
        print(f"  bibs off: {without * 1000:.0f} ms CPU a photo; {load_off.describe()}")
        with_bibs, load_on, step_ms = drain(work / "on", photos, True, args)
        print(f"  bibs on:  {with_bibs * 1000:.0f} ms CPU a photo; {load_on.describe()}")
        print(
            f"  added by bibs: {(with_bibs - without) * 1000:.0f} ms CPU a photo "
            "(target <= 300), the larger decode included"
        )
        if step_ms:
            print(
                f"  the bib step alone (workers' log, thread CPU): median "
                f"{statistics.median(step_ms):.0f} ms, max {max(step_ms):.0f} ms, "
                f"mean {statistics.fmean(step_ms):.0f} ms over {len(step_ms)} photos"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
