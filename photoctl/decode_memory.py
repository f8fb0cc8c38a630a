"""How much memory image decodes take in one process, and giving it back when they are done.

serve decodes selfies in request threads, next to requests that must stay fast: a 10 KB PNG can
be a 196 MB decode. ``DecodeBudget`` lets decodes run side by side only while their estimated
memory fits one budget; the functions below make glibc return what they freed.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import ctypes
import ctypes.util
import functools
import threading
import time
from collections.abc import Callable, Iterator

# Bytes a decode holds per pixel it decodes to: 4 for Pillow's RGB (RGBX) decode, about 1 more
# for the reduction made from it and the bands it is flattened in (imaging._rgb_at_size);
# measured 4.9 for an RGB PNG, 5.6 for an RGBA one, 2.8 for a palette one.
BYTES_PER_DECODED_PIXEL = 6

# glibc's mallopt parameter: allocations at least this large are served by mmap.
_M_MMAP_THRESHOLD = -3


class DecodeBudget:
    """At most ``slots`` decodes at once, and together at most ``budget_bytes`` (estimated).

    A decode larger than the whole budget still runs, alone; decodes are admitted in the order
    they came. So the decodes of a process hold
    at most max(budget, the largest one admitted) at any time: with serve's defaults, 4 bytes x
    serve.max_decode_pixels x serve.max_concurrent_decodes.
    """

    def __init__(self, slots: int, budget_bytes: int) -> None:
        self.slots = slots
        self.budget_bytes = budget_bytes
        self._running = 0
        self._used = 0
        # Decodes wait their turn in arrival order: small ones must not keep overtaking a big
        # one that waits for the others to finish.
        self._waiting: collections.deque[object] = collections.deque()
        self._changed = threading.Condition()

    def acquire(self, cost_bytes: int, timeout: float) -> bool:
        """Wait for room for a decode of ``cost_bytes``; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        turn = object()
        with self._changed:
            self._waiting.append(turn)
            try:
                while self._waiting[0] is not turn or not self._fits(cost_bytes):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(left)
                self._running += 1
                self._used += cost_bytes
                return True
            finally:
                self._waiting.remove(turn)
                self._changed.notify_all()  # the next in line may fit now

    def release(self, cost_bytes: int) -> None:
        with self._changed:
            self._running -= 1
            self._used -= cost_bytes
            self._changed.notify_all()

    def _fits(self, cost_bytes: int) -> bool:
        if self._running == 0:
            return True
        return self._running < self.slots and self._used + cost_bytes <= self.budget_bytes


def return_large_buffers_to_the_system(threshold_bytes: int = 4 * 1024 * 1024) -> bool:
    """Make large allocations (Pillow's 16 MB image blocks) mmap'd, so freeing gives them back.

    By default glibc raises its mmap threshold after the first large free, and each thread has
    its own arena: a decode of a big image in one of serve's threads then stays resident after
    the request (four decodes in four threads held 1.9 GB), even when decodes take turns.
    Returns False where the C library is not glibc (nothing is changed there).
    """
    libc = _c_library()
    try:
        return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
    except AttributeError:
        return False


def give_back_freed_memory() -> bool:
    """Return the C heap's free pages to the system (glibc ``malloc_trim``), in every arena.

    The mmap threshold above covers Pillow's image blocks, not the many smaller buffers a
    decode and the face engine leave in each thread's arena: eight big selfies kept serve
    150 MB larger than before them. Costs a few ms; False where the C library is not glibc.
    """
    libc = _c_library()
    try:
        return bool(libc is not None and libc.malloc_trim(0))
    except AttributeError:
        return False


@functools.cache
def _c_library() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


# What ends the caller's decode slot once the selfie is decoded and its face found: serve's
# selfie routes set it (api/selfies.py), enrollment calls it (users.enroll_selfie), so that
# matching against a million faces does not keep other selfies waiting for a slot.
_after_decode: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "photoctl_after_decode", default=None
)


@contextlib.contextmanager
def slot_ends_after_decode(release: Callable[[], None]) -> Iterator[None]:
    """Within this block, ``decoded()`` calls ``release`` (once)."""
    token = _after_decode.set(release)
    try:
        yield
    finally:
        _after_decode.reset(token)


def decoded() -> None:
    """The selfie is decoded and its face found: end the decode slot, if a caller holds one."""
    release = _after_decode.get()
    if release is not None:
        _after_decode.set(None)
        release()
