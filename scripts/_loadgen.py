"""An open-loop HTTP/1.1 load generator, run by bench_serve.py as a process of its own.

Why not httpx on the benchmark's own event loop (what bench_serve.py used before): at 200
requests/s it cost ~2.3 ms of CPU a request, as much as serve's answer, on a 2-core machine
where every CPU-ms the generator takes is one serve waits for; its loop ran late (scheduler lag
p99 27 ms on an idle machine) and it shared a process, and so a GIL and a garbage collector,
with the benchmark's bookkeeping. Its p99 was partly its own.

What this one does, and why it is honest:

- Open loop: request i is due at start + i / rate whatever happened to the earlier ones, and
  its latency is measured from that due time to the last byte of the answer. A stalled server
  cannot hide behind a client that slowed down (no coordinated omission): a request that waits
  for a free connection, or for this process to get a CPU, has that wait in its latency.
- Cheap: one thread, non-blocking sockets on epoll, requests encoded once, answers framed by
  Content-Length (chunked answers are read too) and never decoded; the garbage collector off
  (nothing here makes reference cycles). ~0.1 ms of CPU a request.
- Enough connections: CONNECTIONS keep-alive connections opened (and each used once) before the
  clock starts, taken in FIFO order so none idles long enough for uvicorn's keep-alive timeout
  (5 s). One request per connection at a time, as a browser's HTTP/1.1 does; a request due when
  every connection is busy waits for one (and that wait is counted). A connection the server
  closed while idle is opened again; one closed mid-answer is an error.
- Its own process and priority: started in a session of its own (so an autogroup of its own) by
  bench_serve.py, it asks for nice NICE on itself and its autogroup (when allowed), so that the
  instrument is not what waits for a CPU. It stands for clients on other machines, which would
  take no CPU from serve at all; here it takes what the report says it took.

Protocol on stdin/stdout (one JSON line each way): the spec comes in on stdin; it answers
{"ready": ...} once its connections are open, waits for a line "go", runs, and answers with the
results (per request: due index, send and end times, status or error) and its CPU use.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections import deque
from collections.abc import Callable

_READ = 1 << 16


class _Connection:
    __slots__ = ("sock", "buffer", "index", "sent", "deadline", "need", "head_end", "chunked")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.index = -1  # the request in flight, -1 when idle
        self.sent = 0.0
        self.deadline = 0.0
        self.need = -1  # total bytes of the answer once its head is read, -1 before
        self.head_end = -1
        self.chunked = False


def _open(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def _answer_complete(conn: _Connection) -> bool:
    """Is a whole answer in the buffer? Sets conn.need once the head is in."""
    buffer = conn.buffer
    if conn.head_end < 0:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        conn.head_end = end + 4
        head = bytes(buffer[:end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker >= 0:
            line_end = head.find(b"\r\n", marker + 2)
            value = head[marker + 17 : line_end if line_end >= 0 else len(head)]
            conn.need = conn.head_end + int(value)
        elif b"\r\ntransfer-encoding: chunked" in head:
            conn.chunked = True
        else:
            conn.need = conn.head_end  # no body (e.g. 204/304)
    if conn.chunked:
        return buffer.endswith(b"\r\n0\r\n\r\n") or buffer[conn.head_end :].startswith(b"0\r\n\r\n")
    return len(buffer) >= conn.need


def _status(conn: _Connection) -> int:
    try:
        return int(conn.buffer[9:12])
    except ValueError:
        return 0


def _lower_priority_to(nice: int) -> str:
    """Ask for nice `nice` (negative: above the default) on this process and its autogroup."""
    done = []
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        done.append(f"nice {os.getpriority(os.PRIO_PROCESS, 0)}")
    except OSError as error:
        done.append(f"nice unchanged ({error.strerror})")
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
        with open("/proc/self/autogroup") as autogroup:
            done.append(autogroup.read().strip().lstrip("/"))
    except OSError:
        pass
    return ", ".join(done)


def _run_delay() -> float:
    """Seconds this process has been runnable but waiting for a CPU (Linux schedstat)."""
    try:
        with open("/proc/self/schedstat") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def run(spec: dict, go: Callable[[], None]) -> dict:
    host, port = spec["host"], spec["port"]
    rate, total = float(spec["rate"]), int(spec["total"])
    timeout = float(spec["timeout"])
    requests = [(route, raw.encode("latin-1")) for route, raw in spec["requests"]]
    selector = selectors.EpollSelector()
    idle: deque[_Connection] = deque()
    warm = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    for _ in range(int(spec["connections"])):
        conn = _Connection(_open(host, port))
        conn.sock.setblocking(True)
        conn.sock.sendall(warm)
        while not _answer_complete(conn):
            conn.buffer += conn.sock.recv(_READ)
        conn.sock.setblocking(False)
        conn.buffer.clear()
        conn.need = conn.head_end = -1
        conn.chunked = False
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        idle.append(conn)
    print(json.dumps({"ready": True, "priority": spec.get("priority_note", "")}), flush=True)
    go()

    sent_at = [0.0] * total
    done_at = [0.0] * total
    status = [0] * total
    errors: dict[int, str] = {}
    loop_lag = [0.0] * total  # when this loop noticed the request was due, minus the due time
    waiting: deque[int] = deque()  # due, no free connection yet
    busy: set[_Connection] = set()
    reopened = 0
    nonempty = 0
    finished = 0
    next_index = 0
    clock = time.monotonic
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    waited_before = _run_delay()
    start = clock() + 0.02
    interval = 1.0 / rate

    def finish(conn: _Connection, now: float, error: str | None) -> None:
        nonlocal finished, nonempty
        index = conn.index
        done_at[index] = now
        if error is None:
            status[index] = _status(conn)
            # A list with photos in it (JSON) or a gallery grid with tiles (HTML).
            if b'"id"' in conn.buffer or b'class="tile"' in conn.buffer:
                nonempty += 1
        else:
            errors[index] = error
        finished += 1
        conn.index = -1
        conn.buffer.clear()
        conn.need = conn.head_end = -1
        conn.chunked = False
        busy.discard(conn)

    def replace(conn: _Connection) -> _Connection:
        nonlocal reopened
        reopened += 1
        selector.unregister(conn.sock)
        conn.sock.close()
        fresh = _Connection(_open(host, port))
        selector.register(fresh.sock, selectors.EVENT_READ, fresh)
        return fresh

    def send(conn: _Connection, index: int, now: float) -> None:
        conn.index = index
        conn.sent = now
        conn.deadline = now + timeout
        sent_at[index] = now
        busy.add(conn)
        try:
            conn.sock.send(requests[index % len(requests)][1])  # small: fits the socket buffer
        except OSError as error:
            finish(conn, clock(), type(error).__name__)
            idle.append(replace(conn))

    while finished < total:
        now = clock()
        while next_index < total and start + next_index * interval <= now:
            loop_lag[next_index] = now - (start + next_index * interval)
            waiting.append(next_index)
            next_index += 1
        while waiting and idle:
            send(idle.popleft(), waiting.popleft(), now)
            now = clock()
        if next_index < total:
            wait = max(0.0, start + next_index * interval - clock())
        else:
            wait = 0.05
        for key, _events in selector.select(min(wait, 0.05)):
            conn = key.data
            try:
                data = conn.sock.recv(_READ)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as error:
                data, failure = b"", type(error).__name__
            else:
                failure = "closed by server"
            if not data:
                if conn.index >= 0:
                    finish(conn, clock(), failure)
                else:
                    idle.remove(conn)
                fresh = replace(conn)
                idle.append(fresh)
                continue
            if conn.index < 0:
                continue  # bytes nobody asked for: ignored
            conn.buffer += data
            if _answer_complete(conn):
                finish(conn, clock(), None)
                idle.append(conn)
        if busy:
            now = clock()
            for conn in [c for c in busy if c.deadline <= now]:
                finish(conn, now, "timeout")
                idle.append(replace(conn))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "start": start,
        "interval": interval,
        "sent": sent_at,
        "done": done_at,
        "status": status,
        "errors": {str(index): error for index, error in errors.items()},
        "loop_lag": loop_lag,
        "cpu": usage.ru_utime + usage.ru_stime - cpu_before,
        "run_delay": _run_delay() - waited_before,
        "nonempty": nonempty,
        "reopened": reopened,
        "end": clock(),
    }


def main() -> int:
    gc.disable()  # nothing here makes cycles; a collection would only add to the tail
    spec = json.loads(sys.stdin.readline())
    spec["priority_note"] = _lower_priority_to(int(spec.get("nice", 0)))

    def go() -> None:
        line = sys.stdin.readline()
        if line.strip() != "go":
            raise SystemExit(f"expected 'go', got {line!r}")

    result = run(spec, go)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
