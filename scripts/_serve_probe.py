"""`photoctl serve` with two probes, for bench_serve.py --probe: where does serve's tail come from?

Run as ``python scripts/_serve_probe.py OUT serve ARGS...`` (one uvicorn worker: the probes live
in this process). It runs photoctl's CLI unchanged, with:

- every garbage collection of generation 1 or 2, and any collection over 1 ms: when it ended
  (time.monotonic, the clock the load generator uses) and how long it took;
- the event loop's lateness: a task sleeps 20 ms at a time and records, when it wakes more than
  2 ms late, when and by how much, and what the loop's thread did meanwhile: how long it ran
  (a callback that ran long, a garbage collection), how long it waited for a CPU while runnable
  (/proc/thread-self/schedstat), how much CPU the process's other threads used (the loop
  blocked on the GIL while they held it), and how much CPU time the hypervisor stole from the
  machine (/proc/stat, in 10 ms ticks).

Each event is one line appended to OUT ("gc END GEN MS" or "lag WHEN MS RAN WAITED OTHERS
STOLEN"), written as it happens, so bench_serve.py can read the events of each window while
serve runs. The probes cost serve ~50 wake-ups a second (two small /proc reads each) and a
callback per collection.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from typing import Any

_SLEEP = 0.020
_LATE = 0.002
_TICKS = os.sysconf("SC_CLK_TCK")


def _install(out_path: str) -> None:
    out = open(out_path, "a", buffering=1)  # line-buffered: each event reaches the file at once
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if info["generation"] >= 1 or took > 0.001:
            out.write(f"gc {time.monotonic():.6f} {info['generation']} {took * 1000:.3f}\n")

    gc.callbacks.append(on_gc)

    def run_delay_and_steal() -> tuple[float, float]:
        """Seconds this thread waited for a CPU, and the machine's stolen seconds, so far."""
        try:
            with open("/proc/thread-self/schedstat") as schedstat:
                waited = int(schedstat.read().split()[1]) / 1e9
            with open("/proc/stat") as stat:
                stolen = int(stat.readline().split()[8]) / _TICKS
        except (OSError, IndexError, ValueError):
            return 0.0, 0.0
        return waited, stolen

    async def watch_loop() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            thread_cpu, process_cpu = time.thread_time(), time.process_time()
            waited, stolen = run_delay_and_steal()
            await asyncio.sleep(_SLEEP)
            late = loop.time() - before - _SLEEP
            if late > _LATE:
                # What the loop's thread did while it was late: ran (a long callback), waited
                # for a CPU (runnable), or neither: blocked, e.g. on the GIL while the rest of
                # the process (its other threads) ran; and what the hypervisor stole.
                ran = time.thread_time() - thread_cpu
                others = time.process_time() - process_cpu - ran
                waited_now, stolen_now = run_delay_and_steal()
                out.write(
                    f"lag {time.monotonic():.6f} {late * 1000:.3f} {ran * 1000:.3f} "
                    f"{(waited_now - waited) * 1000:.3f} {others * 1000:.3f} "
                    f"{(stolen_now - stolen) * 1000:.3f}\n"
                )

    import photoctl.api.app as app_module

    build = app_module.app_from_env

    def probed() -> Any:
        app = build()
        watching: list[asyncio.Task] = []

        async def probed_app(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan" and not watching:
                watching.append(asyncio.get_running_loop().create_task(watch_loop()))
            await app(scope, receive, send)

        return probed_app

    app_module.app_from_env = probed


def main() -> None:
    out_path = sys.argv[1]
    _install(out_path)
    from photoctl.cli import main as photoctl_main

    sys.argv = ["photoctl", *sys.argv[2:]]
    photoctl_main()


if __name__ == "__main__":
    main()
