"""`photoctl serve` with two probes, for bench_serve.py --probe: where does serve's tail come from?

Run as ``python scripts/_serve_probe.py OUT serve ARGS...`` (one uvicorn worker: the probes live
in this process). It runs photoctl's CLI unchanged, with:

- every garbage collection of generation 1 or 2, and any collection over 1 ms: when it ended
  (time.monotonic, the clock the load generator uses) and how long it took;
- the event loop's lateness: a task sleeps 20 ms at a time and records, when it wakes more than
  2 ms late, when and by how much: the loop was blocked (a callback that ran long, a garbage
  collection, a thread holding the GIL, or the process waiting for a CPU) for that long.

Each event is one line appended to OUT ("gc END GEN MS" or "lag WHEN MS"), written as it
happens, so bench_serve.py can read the events of each window while serve runs. The probes cost
serve ~50 wake-ups a second and a callback per collection.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

_SLEEP = 0.020
_LATE = 0.002


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

    async def watch_loop() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(_SLEEP)
            late = loop.time() - before - _SLEEP
            if late > _LATE:
                out.write(f"lag {time.monotonic():.6f} {late * 1000:.3f}\n")

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
