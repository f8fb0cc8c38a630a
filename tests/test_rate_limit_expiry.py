"""A rate-limit counter never loses its window: a counter that expires between being read and
being incremented starts a new window with an expiry, instead of being re-created by
diskcache without one (a count that only grows: enrollment closed until `cache clear`).

The race is microseconds wide, so the first test forces it: the real storage over a real
diskcache directory, with the key expired just before diskcache's increment. No HTTP request
can aim at that instant. The second test is what such a counter did to a real `photoctl serve`,
through HTTP: one left without expiry (by an older photoctl) must not close enrollment.
"""

from __future__ import annotations

import time
from pathlib import Path

import diskcache
import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter

from photoctl.config import Settings
from photoctl.ratelimit import DiskcacheStorage
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import start_server, stop_server


def test_a_counter_expiring_between_read_and_increment_starts_a_window_with_an_expiry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = DiskcacheStorage(f"diskcache://{tmp_path / 'ratelimit'}")
    limiter = FixedWindowRateLimiter(storage)
    item = parse("2/second")
    key = item.key_for("enroll-event", "gala")
    assert limiter.hit(item, "enroll-event", "gala")

    real_incr = storage.cache.incr

    def incr_just_after_expiry(name, *args, **kwargs):
        # The window ends here, between the storage's read and diskcache's increment.
        storage.cache._sql(
            "UPDATE Cache SET expire_time = ? WHERE key = ?", (time.time() - 0.001, name)
        )
        return real_incr(name, *args, **kwargs)

    monkeypatch.setattr(storage.cache, "incr", incr_just_after_expiry)
    assert limiter.hit(item, "enroll-event", "gala")  # the first of a new window
    count, expires_at = storage.cache.get(key, expire_time=True)
    assert count == 1
    assert expires_at is not None and time.time() < expires_at <= time.time() + 1
    monkeypatch.undo()

    assert limiter.hit(item, "enroll-event", "gala")
    assert not limiter.hit(item, "enroll-event", "gala")  # the window is full
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    assert limiter.hit(item, "enroll-event", "gala")  # and it ends
    assert storage.get_expiry(key) > time.time()


def test_a_counter_left_without_expiry_does_not_close_enrollment(
    tmp_path: Path, db_url: str, settings: Settings
) -> None:
    env = photoctl_env(tmp_path, db_url)
    created = run_photoctl(["events", "create", "gala", "--title", "Gala"], env)
    assert created.returncode == 0, created.stderr
    key = parse(settings.serve.enroll_rate_per_event).key_for("enroll-event", "gala")
    with diskcache.Cache(str(settings.cache_dir / "ratelimit")) as counters:
        counters.set(key, 1_000_000, tag="ratelimit")  # no expiry: what the race left behind
    server = start_server(tmp_path, db_url)
    try:
        with server.client() as client:
            answer = client.post(
                "/api/e/gala",
                files={"selfie": ("selfie.jpg", b"not an image", "image/jpeg")},
                data={"consent": "true"},
            )
        # Past the rate limit, to the selfie's own check.
        assert answer.status_code == 422, answer.text
    finally:
        stop_server(server)
