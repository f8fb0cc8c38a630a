"""What the face service costs, per event, and the daily budget that stops workers (issue 11).

Real boto3 against the local fake endpoint, on SQLite and PostgreSQL: every call is counted per
UTC day and per event (migration 0009 keeps older rows under the empty event key), `stats`,
`/metrics` and `events show` price them, and ``faces.daily_budget`` stops workers from claiming
photo jobs once the day's billed calls reach it (photos wait pending, nothing fails) until the
next UTC day or a raised budget.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from photoctl import budget, config, db, doctor, events, faces, participants, queue, stats, usage
from photoctl.budget_syntax import Budget, parse_budget
from photoctl.errors import ConfigError
from photoctl.ingest import ingest_paths
from photoctl.models import Photo, ServiceCall
from photoctl.worker import drain_in_process
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.colour_faces import face_photo

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 153, 0)


@pytest.fixture
def rk_settings(settings, fake, aws):
    return settings.replace(
        "rekognition",
        endpoint_url=fake.endpoint_url,
        region="eu-west-1",
        max_tps=100.0,
        price_per_1000_calls=2.0,
    ).replace("faces", engine="rekognition")


def spend_calls(engine, count: int, *, day: str | None = None, event: str = "default") -> None:
    """Billed calls counted as if another machine had made them."""
    with db.write(engine) as conn:
        conn.execute(
            ServiceCall.__table__.insert().values(
                service="rekognition",
                day=day or usage.utc_day(),
                event=event,
                operation="IndexFaces",
                accepted=count,
                throttled=0,
                failed=0,
            )
        )


def _metrics(tmp_path, settings, engine) -> str:
    from fastapi.testclient import TestClient

    from photoctl import users
    from photoctl.api.app import create_app

    _, token = users.add_user(engine, "boss", admin=True)
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        return client.get("/metrics").text


def photo_states(engine) -> list[bool]:
    with db.read(engine) as conn:
        return sorted(conn.execute(select(Photo.processed_at.is_not(None))).scalars())


# -- per-event counts --------------------------------------------------------------------------


def test_calls_are_counted_per_event_and_priced_in_stats_metrics_and_events_show(
    rk_settings, engine, fake, tmp_path, db_url
) -> None:
    from fastapi.testclient import TestClient

    from photoctl import users
    from photoctl.api.app import create_app

    run = events.create_event(engine, "run", title="Run", date=None, retention_days=30)
    rekognition = faces.make_engine("rekognition", rk_settings, engine)
    participants.enroll_participant(
        engine,
        rekognition,
        rk_settings,
        run,
        face_photo(tmp_path / "selfie.jpg", [RED], (640, 480)),
        consented=True,
        access_code=None,
    )  # IndexFaces + SearchFaces, for "run"
    face_photo(tmp_path / "run" / "a.jpg", [RED])
    face_photo(tmp_path / "run" / "b.jpg", [RED, BLUE], (820, 600))
    face_photo(tmp_path / "other" / "c.jpg", [GREEN])
    ingest_paths(engine, rk_settings, [str(tmp_path / "run")], event_id=run.id)
    ingest_paths(engine, rk_settings, [str(tmp_path / "other")])
    assert drain_in_process(rk_settings, "rekognition").failed == 0

    with db.read(engine) as conn:
        calls = stats.collect(conn, rk_settings)["rekognition"]
    by_event = calls["by_event"]
    assert set(by_event) == {"run", "default"}
    run_ops = by_event["run"]["total"]["by_operation"]
    assert run_ops["IndexFaces"]["accepted"] == 3  # the selfie and two photos
    searches = len(fake.calls("SearchFaces"))
    assert run_ops["SearchFaces"]["accepted"] == searches >= 2
    default_ops = by_event["default"]["total"]["by_operation"]
    assert default_ops["IndexFaces"]["accepted"] == 1 and "SearchFaces" not in default_ops
    assert by_event["run"]["today"]["billed"] == 3 + searches
    assert by_event["run"]["total"]["estimated_cost_usd"] == pytest.approx((3 + searches) * 0.002)
    assert calls["total"]["billed"] == 4 + searches  # the totals are the sum of the events
    with db.read(engine) as conn:
        rendered = stats.render(stats.collect(conn, rk_settings))
    accepted = by_event["run"]["total"]["accepted"]  # CreateCollection too, not billed
    assert f"  event run: today {accepted} calls ({3 + searches} billed)" in rendered
    assert "  event default: today 2 calls (1 billed) ~$0.002" in rendered

    env = photoctl_env(tmp_path, db_url, PHOTOCTL_REKOGNITION_PRICE_PER_1000_CALLS="2")
    shown = run_photoctl(["events", "show", "run", "--json"], env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["rekognition"]["total"]["billed"] == 3 + searches
    plain = run_photoctl(["events", "show", "run"], env).stdout
    assert f"rekognition: today {accepted} calls ({3 + searches} billed)" in plain

    _, token = users.add_user(engine, "boss", admin=True)
    serve = config.load(
        data_dir=str(tmp_path / "data"),
        environ={},
        overrides={"database.url": db_url, "rekognition.price_per_1000_calls": 2.0},
    )
    with TestClient(create_app(serve)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        metrics = client.get("/metrics").text
    run_index = 'photoctl_rekognition_event_calls_total{event="run",operation="IndexFaces"} 3.0'
    assert run_index in metrics
    assert (
        'photoctl_rekognition_event_estimated_cost_usd{event="default",period="today"} 0.002'
        in metrics
    )


def downgraded_to(engine, revision: str) -> None:
    from alembic import command

    with engine.connect() as connection, connection.begin():
        alembic = db._alembic_config()
        alembic.attributes["connection"] = connection
        command.downgrade(alembic, revision)


def test_migration_0009_keeps_earlier_counts_under_the_empty_event_key(
    tmp_path: Path, empty_db_url: str
) -> None:
    from tests.test_events_schema import upgraded_to

    settings = config.load(
        data_dir=str(tmp_path / "data"), environ={}, overrides={"database.url": empty_db_url}
    )
    engine = db.make_engine(settings)
    try:
        upgraded_to(engine, "0008")
        with db.write(engine) as conn:
            conn.execute(
                text(
                    "INSERT INTO service_calls (service, day, operation, accepted, throttled,"
                    " failed) VALUES ('rekognition', '2026-11-01', 'IndexFaces', 7, 1, 0)"
                )
            )
        db.ensure_schema(engine)
        with db.read(engine) as conn:
            rows = conn.execute(select(ServiceCall.__table__)).all()
            summary = usage.summary(conn, settings.rekognition)
        assert [tuple(row) for row in rows] == [
            ("rekognition", "2026-11-01", "", "IndexFaces", 7, 1, 0)
        ]
        assert summary["total"]["billed"] == 7 and list(summary["by_event"]) == [""]
        assert "(before per-event counts)" in stats.render_calls(summary)
        spend_calls(engine, 3, day="2026-11-01", event="run")
        downgraded_to(engine, "0008")  # the events of a day are summed again
        with db.read(engine) as conn:
            rows = conn.execute(text("SELECT day, accepted, throttled FROM service_calls")).all()
        assert [tuple(row) for row in rows] == [("2026-11-01", 10, 1)]
    finally:
        engine.dispose()


# -- the budget's syntax -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20000", Budget(calls=20000)),
        ("20000 calls", Budget(calls=20000)),
        ("$25", Budget(usd=25.0)),
        ("25 USD", Budget(usd=25.0)),
        ("12.50usd", Budget(usd=12.5)),
        ("", None),
        ("none", None),
    ],
)
def test_a_budget_is_a_number_of_calls_or_an_amount_in_usd(text, expected) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize("bad", ["25 EUR", "-3", "$", "lots", "1e4"])
def test_a_budget_in_another_form_is_a_config_error_naming_the_key_and_the_forms(
    tmp_path, bad
) -> None:
    with pytest.raises(ConfigError) as error:
        config.load(data_dir=str(tmp_path), environ={"PHOTOCTL_FACES_DAILY_BUDGET": bad})
    message = str(error.value)
    assert message.startswith("faces.daily_budget must be a number of calls (20000) or an amount")
    assert repr(bad) in message and "env PHOTOCTL_FACES_DAILY_BUDGET" in message


def test_a_money_budget_compares_the_estimated_cost() -> None:
    assert not Budget(usd=1.0).reached(499, price_per_1000_calls=2.0)
    assert Budget(usd=1.0).reached(500, price_per_1000_calls=2.0)


# -- the budget stops workers ------------------------------------------------------------------


def test_a_reached_budget_leaves_photos_pending_and_stats_doctor_and_the_log_say_so(
    rk_settings, engine, fake, tmp_path, caplog
) -> None:
    settings = rk_settings.replace("faces", daily_budget="$1")  # 500 calls at $2 per 1,000
    face_photo(tmp_path / "event" / "a.jpg", [RED])
    ingest_paths(engine, settings, [str(tmp_path / "event")])
    spend_calls(engine, 500, event="elsewhere")  # spent by another machine, another event
    with caplog.at_level(logging.WARNING):
        report = drain_in_process(settings, "rekognition")
    assert (report.done, report.failed) == (0, 0)
    assert fake.calls("IndexFaces") == []
    assert photo_states(engine) == [False]
    with db.read(engine) as conn:
        [job] = queue.list_jobs(conn)
        figures = stats.collect(conn, settings)
    assert job.state == "queued" and job.attempts == 0
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "budget_reached"]
    assert record.reached and record.billed_calls == 500 and record.daily_budget == "$1.00"
    assert figures["budget"] == {
        "daily_budget": "$1.00",
        "day": usage.utc_day(),
        "billed_calls": 500,
        "estimated_cost_usd": 1.0,
        "reached": True,
    }
    assert "budget:  $1.00 a day; today 500 billed calls ~$1.00; REACHED" in stats.render(figures)
    metrics = _metrics(tmp_path, settings, engine)
    assert "photoctl_rekognition_budget_reached 1.0" in metrics
    assert "photoctl_rekognition_billed_calls_today 500.0" in metrics
    [check] = [c for c in doctor.run_checks(settings, engine) if c.name == "budget"]
    assert (
        not check.ok
        and "REACHED" in check.detail
        and "raise faces.daily_budget" in (check.detail.lower())
    )

    # A raised budget: the same queue goes on, and only the photo's own call is added.
    report = drain_in_process(settings.replace("faces", daily_budget="600"), "rekognition")
    assert (report.done, report.failed) == (1, 0)
    assert photo_states(engine) == [True] and len(fake.calls("IndexFaces")) == 1


def test_workers_stop_claiming_as_soon_as_their_own_calls_reach_the_budget(
    rk_settings, engine, fake, tmp_path
) -> None:
    # Near the budget (less left than max_tps x the cache's seconds) each claim reads the
    # day's total. One job at a time (one call slot), nobody enrolled: one IndexFaces a photo.
    settings = rk_settings.replace("rekognition", max_concurrency=1).replace(
        "faces", daily_budget="2"
    )
    for index in range(4):
        face_photo(tmp_path / "event" / f"{index}.jpg", [RED], (800 + 10 * index, 600))
    ingest_paths(engine, settings, [str(tmp_path / "event")])
    report = drain_in_process(settings, "rekognition")
    assert (report.done, report.failed) == (2, 0)
    assert photo_states(engine) == [False, False, True, True]
    with db.read(engine) as conn:
        assert budget.spend_today(conn, settings).billed_calls == 2 == len(fake.calls("IndexFaces"))
        assert queue.count_by_state(conn)["queued"] == 2


def test_the_next_utc_day_and_a_raised_budget_in_the_config_file_open_the_gate(
    rk_settings, engine, tmp_path
) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text("[faces]\ndaily_budget = 100\n")
    loaded = config.load(config_file=str(ini), data_dir=str(tmp_path / "data"), environ={})
    assert loaded.faces.daily_budget == "100"
    settings = rk_settings.replace("faces", daily_budget="100")
    settings = type(settings)(
        **{**settings.__dict__, "config_file": ini, "sources": loaded.sources}
    )
    spend_calls(engine, 100)
    now = [time.time()]
    gate = budget.DailyBudget(settings, engine, "rekognition", clock=lambda: now[0])
    gate.cache_seconds = 0.0
    assert gate.reached()
    now[0] += 86400  # tomorrow, UTC: nothing spent yet
    assert not gate.reached()
    now[0] -= 86400
    assert gate.reached()
    ini.write_text("[faces]\ndaily_budget = 150 calls\n")
    os.utime(ini, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not gate.reached() and gate.budget == Budget(calls=150)
    # The local engine is never held back, whatever the budget says.
    assert not budget.DailyBudget(settings, engine, "local").reached()


def test_the_days_total_is_cached_far_from_the_budget_and_read_at_each_claim_near_it(
    rk_settings, engine
) -> None:
    # max_tps 100 x 60 s of cache: 6,000 calls could be spent before the next re-read.
    settings = rk_settings.replace("faces", daily_budget="10000")
    gate = budget.DailyBudget(settings, engine, "rekognition", cache_seconds=60.0)
    spend_calls(engine, 1000)
    assert not gate.reached()  # 9,000 left: far
    spend_calls(engine, 9000, event="run")
    assert not gate.reached(), "cached: no query at each claim"
    gate.cache_seconds = 0.0
    assert gate.reached()

    near = budget.DailyBudget(
        settings.replace("faces", daily_budget="$25"), engine, "rekognition", cache_seconds=60.0
    )
    assert not near.reached()  # 10,000 calls at $2 per 1,000 = $20: 2,500 left, near
    spend_calls(engine, 2500, event="swim")
    assert near.reached(), "near the budget every claim reads the day's total"
