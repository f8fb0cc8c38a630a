"""One measured window of bench_serve.py: requests at a fixed rate from the load generator
process (_loadgen.py), and what the machine's processes did meanwhile (CPU, and time spent
waiting for a CPU), from /proc.

Imported as ``_serve_window`` (scripts/ is on sys.path when a script runs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _bench import group_cpu_seconds, group_run_delay_seconds, load_average, machine_cpu

LOADGEN = Path(__file__).resolve().with_name("_loadgen.py")
PARTICIPANT_PATHS = ("/g/{token}", "/api/g/{token}")
# A window in which processes outside the benchmark used more than this share of the machine's
# CPU is flagged: on a shared 2-core machine their load, not photoctl's, decides the tail.
DISTURBED_SHARE = 0.10
PROBE_SLEEP_MS = 20.0  # _serve_probe.py's sleep between two looks at the event loop


class BenchError(Exception):
    """The benchmark itself could not run (a command failed, the server did not start...)."""


@dataclass(frozen=True)
class Target:
    """One request of the round robin: a route (for the report), its path and headers."""

    route: str
    path: str
    headers: dict[str, str]


def targets(tokens: list[str], galleries: list[str]) -> list[Target]:
    """my-photos for each user, interleaved with each participant's gallery page and JSON."""
    mine = [
        Target("/api/my-photos", "/api/my-photos", {"Authorization": f"Bearer {token}"})
        for token in tokens
    ]
    theirs = [
        [
            Target(path.split("{")[0] + "<token>", path.format(token=token), {})
            for token in galleries
        ]
        for path in PARTICIPANT_PATHS
    ]
    mixed: list[Target] = []
    for index in range(max(len(mine), *(len(group) for group in theirs), 1)):
        for group in (mine, *theirs):
            if group:
                mixed.append(group[index % len(group)])
    return mixed


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Window:
    name: str
    rate: float
    duration: float
    scheduled_ms: list[float] = field(default_factory=list)  # latency from the scheduled time
    sent_ms: list[float] = field(default_factory=list)  # latency from the actual send
    lag_ms: list[float] = field(default_factory=list)  # send - scheduled
    loop_lag_ms: list[float] = field(default_factory=list)  # noticed due - scheduled
    errors: dict[str, int] = field(default_factory=dict)
    by_route: dict[str, list[float]] = field(default_factory=dict)  # latency from scheduled
    nonempty: int = 0
    requests: int = 0
    elapsed: float = 0.0  # first scheduled send to last answer
    client_cpu: float = 0.0  # seconds of CPU of the load generator during the window
    server_cpu: float = 0.0  # seconds of CPU of serve (and its uvicorn workers) in the window
    load_before: str = ""
    load_after: str = ""
    machine_busy: float = 0.0  # CPU seconds used on the whole machine (all cores) in the window
    machine_steal: float = 0.0  # CPU seconds the hypervisor gave to others
    workers_cpu: float | None = None  # the `photoctl work` tree, under load
    # Seconds the threads of each spent runnable but waiting for a CPU (/proc/*/schedstat).
    server_wait: float = 0.0
    client_wait: float = 0.0
    workers_wait: float | None = None
    generator_priority: str = ""
    reopened: int = 0  # connections the generator had to open again
    began_at: float = 0.0  # time.monotonic() of the first due time
    probe: str = ""  # what serve's probes saw in the window (bench_serve.py --probe)
    progress: list[str] = field(default_factory=list)

    def error_count(self) -> int:
        return sum(self.errors.values())

    def p(self, values: list[float], q: float) -> float:
        return _percentile(values, q)

    @property
    def cores(self) -> int:
        return os.cpu_count() or 1

    @property
    def others(self) -> float:
        mine = self.server_cpu + self.client_cpu + (self.workers_cpu or 0.0)
        return max(0.0, self.machine_busy - mine)

    @property
    def disturbance(self) -> float:
        """Share of the machine's CPU used by processes outside this benchmark."""
        capacity = self.cores * self.elapsed
        return self.others / capacity if capacity else 0.0

    @property
    def disturbed(self) -> bool:
        return self.disturbance > DISTURBED_SHARE

    @property
    def p99(self) -> float:
        return self.p(self.scheduled_ms, 0.99)

    def report(self) -> str:
        done = len(self.scheduled_ms)
        achieved = self.requests / self.elapsed if self.elapsed else 0.0
        per_request = 1000 / max(1, done)
        lines = [
            f"{self.name}: {self.requests} requests scheduled at {self.rate:g}/s for "
            f"{self.duration:g} s; achieved {achieved:.1f} requests/s "
            f"({self.elapsed:.2f} s first send to last answer)",
            f"  latency from scheduled time: p50 {self.p(self.scheduled_ms, 0.5):.2f} ms, "
            f"p90 {self.p(self.scheduled_ms, 0.9):.2f} ms, p99 {self.p99:.2f} ms, "
            f"p99.9 {self.p(self.scheduled_ms, 0.999):.2f} ms, "
            f"max {max(self.scheduled_ms, default=float('nan')):.2f} ms",
            f"  latency from actual send:    p50 {self.p(self.sent_ms, 0.5):.2f} ms, "
            f"p99 {self.p(self.sent_ms, 0.99):.2f} ms, "
            f"max {max(self.sent_ms, default=float('nan')):.2f} ms",
            f"  generator ({self.generator_priority}): due -> noticed p99 "
            f"{self.p(self.loop_lag_ms, 0.99):.2f} ms, max {max(self.loop_lag_ms, default=0):.2f}"
            f" ms; due -> sent (+ wait for a free connection) p50 {self.p(self.lag_ms, 0.5):.2f}"
            f" ms, p99 {self.p(self.lag_ms, 0.99):.2f} ms, max {max(self.lag_ms, default=0):.2f}"
            f" ms; CPU {self.client_cpu:.2f} s ({1000 * self.client_cpu * per_request:.0f} us "
            f"per request); connections reopened {self.reopened}",
            f"  serve CPU {self.server_cpu:.2f} s "
            f"({100 * self.server_cpu / self.elapsed if self.elapsed else 0:.0f}% of one core, "
            f"{self.server_cpu * per_request:.2f} ms per request); "
            f"machine load average {self.load_before} before, {self.load_after} after",
            f"  machine CPU: {self.machine_busy:.1f} s busy of {self.cores * self.elapsed:.0f} s "
            f"({self.cores} cores): serve {self.server_cpu:.1f}, generator {self.client_cpu:.1f}"
            + (f", workers {self.workers_cpu:.1f}" if self.workers_cpu is not None else "")
            + f", everything else {self.others:.1f}"
            + (" (the concurrent ingest included)" if self.workers_cpu is not None else "")
            + f"; steal {self.machine_steal:.1f} s",
            f"  waiting for a CPU (runnable, not running): serve {self.server_wait:.2f} s "
            f"({self.server_wait * per_request:.2f} ms per request), generator "
            f"{self.client_wait:.2f} s"
            + (f", workers {self.workers_wait:.1f} s" if self.workers_wait is not None else ""),
            *(
                [
                    f"  WARNING: other processes used {self.others:.1f} s of CPU in this window "
                    f"({self.disturbance:.0%} of the machine): these figures measure them too"
                ]
                if self.disturbed
                else []
            ),
            "  p99 by route: "
            + ", ".join(
                f"{route} {self.p(values, 0.99):.2f} ms ({len(values)})"
                for route, values in self.by_route.items()
            ),
            *([self.probe] if self.probe else []),
            f"  answers: {done - self.error_count()} ok ({self.nonempty} non-empty lists), "
            f"errors {self.error_count()}"
            + (f" {dict(sorted(self.errors.items()))}" if self.errors else ""),
        ]
        return "\n".join(lines)


def _raw_request(target: Target, host: str) -> str:
    headers = "".join(f"{name}: {value}\r\n" for name, value in target.headers.items())
    return f"GET {target.path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n"


def fire(
    window: Window,
    processes: Any,  # bench_serve.Processes: start(..., stdin=) and forget()
    url: str,
    requests: list[Target],
    connections: int,
    timeout: float,
    generator_nice: int,
    server_pid: int,
    on_tick: Callable[[float], None] | None = None,
    tick_every: float = 5.0,
    workers_pid: int | None = None,
) -> None:
    """Run one window: the generator process opens its connections, the CPU counters are read,
    it sends rate x duration requests (open loop), and the counters are read again."""
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}"
    total = int(window.rate * window.duration)
    window.requests = total
    spec = {
        "host": parts.hostname,
        "port": parts.port,
        "rate": window.rate,
        "total": total,
        "timeout": timeout,
        "connections": connections,
        "nice": generator_nice,
        "requests": [[target.route, _raw_request(target, host)] for target in requests],
    }
    generator = processes.start(
        [sys.executable, str(LOADGEN)], f"loadgen-{re.sub('[^a-z0-9]+', '-', window.name)}.out",
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert generator.stdin is not None and generator.stdout is not None
    generator.stdin.write(json.dumps(spec).encode() + b"\n")
    generator.stdin.flush()
    ready_line = generator.stdout.readline()
    if not ready_line:
        generator.wait(10)
        raise BenchError(f"the load generator exited {generator.returncode} before it was ready")
    window.generator_priority = json.loads(ready_line).get("priority", "")

    window.load_before = load_average(all_three=True)
    server_before = group_cpu_seconds(server_pid), group_run_delay_seconds(server_pid)
    busy_before, steal_before = machine_cpu()
    workers_before = (
        (group_cpu_seconds(workers_pid), group_run_delay_seconds(workers_pid))
        if workers_pid
        else (0.0, 0.0)
    )
    answer: list[bytes] = []
    reader = threading.Thread(target=lambda: answer.append(generator.stdout.readline()))
    generator.stdin.write(b"go\n")
    generator.stdin.flush()
    began = time.monotonic()
    reader.start()
    ticks = 0
    while reader.is_alive():
        reader.join(max(0.0, began + (ticks + 1) * tick_every - time.monotonic()))
        if reader.is_alive() and on_tick is not None and ticks + 1 <= window.duration / tick_every:
            ticks += 1
            on_tick(ticks * tick_every)
    window.server_cpu = group_cpu_seconds(server_pid) - server_before[0]
    window.server_wait = group_run_delay_seconds(server_pid) - server_before[1]
    busy_after, steal_after = machine_cpu()
    window.machine_busy = busy_after - busy_before
    window.machine_steal = steal_after - steal_before
    if workers_pid:
        window.workers_cpu = group_cpu_seconds(workers_pid) - workers_before[0]
        window.workers_wait = group_run_delay_seconds(workers_pid) - workers_before[1]
    window.load_after = load_average(all_three=True)
    generator.wait(30)
    processes.forget(generator)
    if not answer or not answer[0]:
        raise BenchError(f"the load generator exited {generator.returncode} without results")
    result = json.loads(answer[0])
    _fill(window, result, requests)


def _fill(window: Window, result: dict, requests: list[Target]) -> None:
    start, interval = result["start"], result["interval"]
    errors = {int(index): error for index, error in result["errors"].items()}
    last = start
    for index, (sent, done, status) in enumerate(
        zip(result["sent"], result["done"], result["status"], strict=True)
    ):
        scheduled = start + index * interval
        target = requests[index % len(requests)]
        latency = (done - scheduled) * 1000
        window.scheduled_ms.append(latency)
        window.sent_ms.append((done - sent) * 1000)
        window.lag_ms.append((sent - scheduled) * 1000)
        window.by_route.setdefault(target.route, []).append(latency)
        last = max(last, done)
        if index in errors:
            key = errors[index]
        elif status != 200:
            key = f"HTTP {status} {target.route}"
        else:
            continue
        window.errors[key] = window.errors.get(key, 0) + 1
    window.loop_lag_ms = [lag * 1000 for lag in result["loop_lag"]]
    window.nonempty = result["nonempty"]
    window.client_cpu = result["cpu"]
    window.client_wait = result["run_delay"]
    window.reopened = result["reopened"]
    window.elapsed = last - start
    window.began_at = start


def probe_report(path: Path, window: Window) -> str:
    """What _serve_probe.py recorded during the window: collections and loop stalls, and for
    the stalls over 10 ms what the loop's thread did meanwhile and when they happened."""
    gcs: dict[int, list[float]] = {}
    lags: list[float] = []
    long: list[list[float]] = []  # [when, late, ran, waited, others, stolen] of stalls > 10 ms
    end = window.began_at + window.elapsed
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return "  serve probes: no file"
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or not window.began_at <= float(parts[1]) <= end:
            continue
        if parts[0] == "gc":
            gcs.setdefault(int(parts[2]), []).append(float(parts[3]))
        elif parts[0] == "lag":
            lags.append(float(parts[2]))
            if float(parts[2]) > 10 and len(parts) >= 7:
                long.append([float(value) for value in parts[1:7]])
    collections = ", ".join(
        f"gen {gen} x{len(times)} (max {max(times):.1f} ms, total {sum(times):.0f} ms)"
        for gen, times in sorted(gcs.items())
    )
    worst = ", ".join(f"{lag:.0f}" for lag in sorted(lags, reverse=True)[:8])
    report = (
        f"  serve probes: collections {collections or 'none over 1 ms'}; event loop late "
        f"> 2 ms {len(lags)} times (> 10 ms {sum(lag > 10 for lag in lags)}, > 50 ms "
        f"{sum(lag > 50 for lag in lags)}; worst {worst or '-'} ms)"
    )
    if long:
        late, ran, waited, others, stolen = (sum(row[i] for row in long) for i in range(1, 6))
        spans = late + PROBE_SLEEP_MS * len(long)  # each stall ends a 20 ms sleep
        at = [row[0] - window.began_at for row in long]
        report += (
            f"\n  loop stalls > 10 ms ({late:.0f} ms in all; over their {spans:.0f} ms of sleep "
            f"+ lateness): the loop's thread ran {ran:.0f} ms, waited for a CPU {waited:.0f} "
            f"ms, was off the CPU {max(0.0, spans - ran - waited):.0f} ms (up to "
            f"{PROBE_SLEEP_MS * len(long):.0f} of it idle, the rest blocked: GIL, I/O); serve's "
            f"other threads ran {others:.0f} ms; hypervisor steal {stolen:.0f} ms; "
            f"at t = {min(at):.1f}-{max(at):.1f} s of the window"
        )
    return report
