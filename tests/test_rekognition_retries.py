"""Retries of Rekognition calls: botocore's are off, every retry goes through the shared limiter.

Real boto3 against the fake endpoint (testkit/fake_rekognition.py); what the limiter counted is
read from the database (``service_calls``), what the service received from the endpoint.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from photoctl import db, faces
from photoctl.errors import TransientError
from photoctl.faces.limiter import CallLimiter, LimiterSettings
from photoctl.models import ServiceCall
from testkit.fake_rekognition import FakeRekognition


@pytest.fixture
def rekognition(settings, engine, fake, aws):
    rk_settings = settings.replace(
        "rekognition", endpoint_url=fake.endpoint_url, region="eu-west-1", max_tps=200.0
    )
    face_engine = faces.make_engine("rekognition", rk_settings, engine)
    face_engine._ensure_collection()
    fake.reset_stats()
    return face_engine


def counted(engine, operation: str) -> tuple[int, int, int]:
    """(accepted, throttled, failed) the limiter counted today for an operation."""
    with db.read(engine) as conn:
        row = conn.execute(
            select(ServiceCall.accepted, ServiceCall.throttled, ServiceCall.failed).where(
                ServiceCall.operation == operation
            )
        ).one_or_none()
    return tuple(row) if row else (0, 0, 0)  # type: ignore[return-value]


def test_botocore_sends_each_request_once_so_the_limiter_counts_every_throttle(
    rekognition, engine, fake
) -> None:
    fake.throttle_next(3)
    answer = rekognition._call("list_faces", CollectionId="photoctl")
    assert answer["Faces"] == []
    # Four requests reached the service, each one through the limiter and counted there.
    assert [r.throttled for r in fake.records] == [True, True, True, False]
    assert counted(engine, "ListFaces") == (1, 3, 0)


def test_an_isolated_throttle_is_a_blip_and_costs_no_slow_down(rekognition, engine, fake, caplog):
    fake.throttle_next(1)
    with caplog.at_level("INFO"):
        rekognition._call("list_faces", CollectionId="photoctl")
    assert caplog.text.count("a blip") == 1 and "shared rate lowered" not in caplog.text
    assert rekognition.limiter.current_rate() == 200.0  # exactly: nothing to recover from
    assert counted(engine, "ListFaces") == (1, 1, 0)


def test_throttles_of_one_burst_lower_the_shared_rate_once(rekognition, fake, caplog) -> None:
    fake.throttle_next(5)
    with caplog.at_level("INFO"):
        rekognition._call("list_faces", CollectionId="photoctl")
    # The first throttle could have been a blip; the second, at once, says it was not.
    assert caplog.text.count("a blip") == 1
    assert caplog.text.count("shared rate lowered") == 1
    assert rekognition.limiter.current_rate() == pytest.approx(200.0 * 2 / 3, rel=0.05)


def test_a_blip_leaves_one_start_out_and_throttles_after_it_step_the_rate_down(engine) -> None:
    """The rule of faces/limiter.py, step by step: a throttle at max_tps over a second after the
    last reaction is a blip (rate kept, one start left out), and so is one of a call sent before
    the blip was seen; a call sent after a blip and throttled within the second, or a throttle
    while recovering from a slow-down, is congestion (x 2/3, at most once a second after a
    slow-down); back at max_tps after cooldown_seconds, the next throttle is a blip again."""
    limits = LimiterSettings(name="test", max_concurrency=4, max_tps=50.0, cooldown_seconds=5.0)
    limiter = CallLimiter(engine, limits, "holder")
    spacing = 1.03 / 50.0
    t0 = 1_000_000.0  # in the past: the next start stays where the limiter put it (now)

    def state() -> tuple[float, float, float]:
        with db.write(engine) as conn:
            return limiter._locked_state(conn)

    limiter._prepare()
    next_at = state()[0]
    assert next_at > t0 + 100
    assert limiter.throttled(now=t0) is None
    assert state() == pytest.approx((next_at + spacing, 50.0, t0))
    assert limiter.current_rate(t0 + 0.5) == 50.0
    # A call sent 0.25 s before the blip was seen, throttled too: the same blip.
    assert limiter.throttled(now=t0 + 0.04, sent_at=t0 - 0.25) is None
    assert state() == pytest.approx((next_at + 2 * spacing, 50.0, t0))
    # 1.5 s after it: another blip.
    assert limiter.throttled(now=t0 + 1.5) is None
    assert state() == pytest.approx((next_at + 3 * spacing, 50.0, t0 + 1.5))

    # A call sent after that blip, throttled within the second: congestion, at once.
    assert limiter.throttled(now=t0 + 2.0, sent_at=t0 + 1.7) == pytest.approx(50.0 * 2 / 3)
    # The same burst for a second after the slow-down: no further step.
    assert limiter.throttled(now=t0 + 2.9) is None
    assert limiter.current_rate(t0 + 2.9) == pytest.approx(50.0 * 2 / 3 + 50.0 / 3 * 0.9 / 5)
    # Throttled again 1.5 s after it, while recovering: a third off the recovered rate.
    recovered = 50.0 * 2 / 3 + 50.0 / 3 * 1.5 / 5
    assert limiter.throttled(now=t0 + 3.5) == pytest.approx(recovered * 2 / 3)
    # Still recovering 4.9 s later: congestion again, not a blip.
    assert limiter.current_rate(t0 + 8.4) < 50.0
    lowered = limiter.throttled(now=t0 + 8.4)
    assert lowered is not None and lowered < 50.0 * 2 / 3
    # Back at max_tps cooldown_seconds after that, and the next throttle is a blip.
    assert limiter.current_rate(t0 + 13.4) == pytest.approx(50.0)
    assert limiter.throttled(now=t0 + 13.4) is None
    assert state()[1:] == pytest.approx((50.0, t0 + 13.4))
    assert limiter.current_rate(t0 + 13.5) == 50.0


def test_server_errors_are_sent_again_through_the_limiter_a_few_times(
    rekognition, engine, fake
) -> None:
    fake.fail_next(2, "InternalServerError", status=500)
    rekognition._call("list_faces", CollectionId="photoctl")
    assert counted(engine, "ListFaces") == (1, 0, 2)

    fake.fail_next(3, "ServiceUnavailableException", status=503)
    with pytest.raises(TransientError, match="ServiceUnavailableException"):
        rekognition._call("list_faces", CollectionId="photoctl")
    assert counted(engine, "ListFaces") == (1, 0, 5)


def test_an_unreachable_endpoint_is_tried_a_few_times_then_a_transient_error(
    settings, engine, aws
) -> None:
    with FakeRekognition() as gone:
        url = gone.endpoint_url
    rk_settings = settings.replace("rekognition", endpoint_url=url, region="eu-west-1")
    face_engine = faces.make_engine("rekognition", rk_settings, engine)
    with pytest.raises(TransientError):
        face_engine._call("list_faces", CollectionId="photoctl")
    assert counted(engine, "ListFaces") == (0, 0, 3)


def test_after_a_burst_of_throttles_the_rate_is_back_over_90_percent_within_10_seconds(
    engine,
) -> None:
    limits = LimiterSettings(name="test", max_concurrency=4, max_tps=50.0)
    limiter = CallLimiter(engine, limits, "holder")
    start = 1_000_000.0
    # A 2-second burst: the endpoint throttles everything, 20 answers a second come back.
    for tick in range(40):
        limiter.throttled(now=start + tick * 0.05)
    burst_end = start + 2.0
    assert limiter.current_rate(burst_end) < 50.0 * 0.6  # it slowed down, once per second
    recovered_at = next(
        t / 10 for t in range(0, 200) if limiter.current_rate(burst_end + t / 10) >= 45.0
    )
    assert recovered_at <= 10.0
    assert limiter.current_rate(burst_end + 10.0) == pytest.approx(50.0)


def test_stats_and_metrics_show_calls_by_api_and_their_estimated_cost(
    settings, engine, fake, aws, tmp_path, db_url
) -> None:
    from fastapi.testclient import TestClient

    from photoctl import config, stats, users
    from photoctl.api.app import create_app
    from photoctl.ingest import ingest_paths
    from photoctl.worker import drain_in_process
    from testkit.fake_rekognition import PALETTE, make_face_image
    from testkit.photos import settle

    rk_settings = settings.replace(
        "rekognition",
        endpoint_url=fake.endpoint_url,
        region="eu-west-1",
        price_per_1000_calls=2.0,
        price_per_face_month=0.5,
    )
    (tmp_path / "event").mkdir()
    for index in range(3):
        path = tmp_path / "event" / f"{index}.jpg"
        path.write_bytes(make_face_image([PALETTE[index]]))
        settle(path)
    selfie = tmp_path / "selfie.jpg"
    selfie.write_bytes(make_face_image([PALETTE[0]]))
    face_engine = faces.make_engine("rekognition", rk_settings, engine)
    users.add_user(engine, "first")
    users.enroll(engine, face_engine, rk_settings, "first", selfie)  # IndexFaces + SearchFaces
    ingest_paths(engine, rk_settings, [str(tmp_path / "event")])
    fake.throttle_next(2)
    assert drain_in_process(rk_settings, "rekognition").failed == 0  # 3 x (Index + Search)

    with db.read(engine) as conn:
        figures = stats.collect(conn, rk_settings)["rekognition"]
    today = figures["today"]
    assert today["by_operation"]["IndexFaces"]["accepted"] == 4
    assert today["by_operation"]["SearchFaces"]["accepted"] == 4
    assert today["billed"] == 8 and today["throttled"] == 2
    assert today["estimated_cost_usd"] == pytest.approx(8 * 2.0 / 1000)
    assert figures["total"]["billed"] == 8  # collection calls are not billed
    assert figures["stored_faces"] == 4 and figures["storage_cost_per_month_usd"] == 2.0
    line = stats.render({**_empty_figures(), "rekognition": figures})
    assert any(text.startswith("rekognition: today ") for text in line.splitlines())
    assert line.splitlines()[-1].startswith("  event default: today 9 calls (8 billed)")
    assert "IndexFaces 4" in line and "2 throttled" in line and "~$0.02" in line

    _, token = users.add_user(engine, "boss", admin=True)
    serve = config.load(
        data_dir=str(tmp_path / "data"),
        environ={},
        overrides={
            "database.url": db_url,
            "rekognition.price_per_1000_calls": 2.0,
            "rekognition.price_per_face_month": 0.5,
        },
    )
    with TestClient(create_app(serve)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        text = client.get("/metrics").text
    assert 'photoctl_rekognition_calls_total{operation="IndexFaces",outcome="accepted"} 4.0' in text
    assert 'photoctl_rekognition_estimated_cost_usd{period="today"} 0.016' in text
    assert "photoctl_rekognition_stored_faces 4.0" in text


def _empty_figures() -> dict:
    return {
        "queue": {
            "current_queue_size": 0,
            "retrying": 0,
            "running": 0,
            "oldest_queued_seconds": 0.0,
            "total_enqueued": 0,
            "total_processed": 0,
            "total_failed": 0,
            "processed_last_minute": 0,
            "workers_active": 0,
        },
        "photos": {"total": 0, "done": 0, "failed": 0, "pending": 0},
        "cache": {"user_photos_cache": {"size": 0, "hits": 0, "misses": 0, "hit_rate": 0.0}},
        "time_to_findable": {"count": 0, "p50_seconds": None, "p95_seconds": None},
    }
