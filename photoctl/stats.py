"""Queue and photo figures, the same for `photoctl stats` and the admin stats route.

Every object carries the UTC time it was taken, so lines of `stats --watch --json` kept in a
file can be plotted without the collector's clock.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, func, select

from photoctl import catalog, face_store, queue, usage, workers_registry
from photoctl.bibs import store as bib_store
from photoctl.budget import spend_today
from photoctl.budget_syntax import usd_text
from photoctl.config import Settings
from photoctl.models import Job, JobState
from photoctl.wording import plural

jobs = Job.__table__


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


def collect(
    conn: Connection, settings: Settings, now: float | None = None, cache_stats: dict | None = None
) -> dict:
    """The stats object of SPEC.md: queue, cache, photos, time to findable (last hour)."""
    now = time.time() if now is None else now
    by_kind = queue.count_by_kind_and_state(conn)  # one pass over an index, for both
    counts = {state.value: 0 for state in JobState}
    for (_, state), count in by_kind.items():
        counts[state] = counts.get(state, 0) + count
    # One MIN per state: each is one step down ix_jobs_state_created_at (an IN list made
    # both databases read every waiting job).
    oldest = [
        conn.execute(select(func.min(jobs.c.created_at)).where(jobs.c.state == state)).scalar_one()
        for state in queue.WAITING_STATES
    ]
    oldest_created = min((t for t in oldest if t is not None), default=None)
    findable = face_store.findable_seconds(conn, now - 3600)
    processed_last_minute = conn.execute(
        select(func.count())
        .select_from(jobs)
        .where(jobs.c.state == JobState.DONE, jobs.c.finished_at >= now - 60)
    ).scalar_one()
    return {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "queue": {
            "total_enqueued": sum(counts.values()),
            "total_processed": counts[JobState.DONE],
            "total_failed": counts[JobState.FAILED],
            "current_queue_size": counts[JobState.QUEUED] + counts[JobState.RETRYING],
            "retrying": counts[JobState.RETRYING],
            "running": counts[JobState.RUNNING],
            "workers_active": workers_registry.count_live_workers(
                conn, settings.queue.lease_seconds, now
            ),
            "oldest_queued_seconds": round(now - oldest_created, 1) if oldest_created else 0.0,
            "processed_last_minute": processed_last_minute,
        },
        "cache": {
            "user_photos_cache": cache_stats or {"size": 0, "hits": 0, "misses": 0, "hit_rate": 0.0}
        },
        "photos": catalog.photo_counts(conn, by_kind),
        "faces": {"failed": catalog.faces_failed_count(conn)},
        "bibs": bib_store.counts(conn).as_json(),
        "rekognition": usage.summary(conn, settings.rekognition, now),
        "budget": spend_today(conn, settings, now=now).as_json(),
        "time_to_findable": {
            "count": len(findable),
            "p50_seconds": percentile(findable, 0.5),
            "p95_seconds": percentile(findable, 0.95),
        },
    }


def render(figures: dict) -> str:
    """Human-readable lines for the terminal."""
    q, p = figures["queue"], figures["photos"]
    cache = figures["cache"]["user_photos_cache"]
    findable = figures["time_to_findable"]
    faces_failed = figures.get("faces", {}).get("failed", 0)
    if findable["count"]:
        findable_line = (
            f"findable: p50 {findable['p50_seconds']:.1f} s, p95 {findable['p95_seconds']:.1f} s "
            f"from ingest to a user's list "
            f"({plural(findable['count'], 'match', 'matches')} in the last hour)"
        )
    else:
        findable_line = "findable: no photo matched a user in the last hour"
    lines = [
        f"queue:   {q['current_queue_size']} waiting ({q['retrying']} to retry), "
        f"{q['running']} running, oldest waiting {q['oldest_queued_seconds']:.0f} s",
        f"jobs:    {q['total_enqueued']} enqueued, {q['total_processed']} done, "
        f"{q['total_failed']} failed, {q['processed_last_minute']} done in the last minute",
        f"workers: {q['workers_active']} alive",
        f"photos:  {p['total']} total, {p['done']} done, {p['failed']} failed, "
        f"{p['pending']} pending"
        + (
            f"; {faces_failed} without faces: the face service refused them (`jobs list` says why)"
            if faces_failed
            else ""
        ),
        findable_line,
        f"cache:   {plural(cache['size'], 'entry')}, {plural(cache['hits'], 'hit')}, "
        f"{plural(cache['misses'], 'miss', 'misses')}",
    ]
    bibs = figures.get("bibs")
    if bibs and (bibs["photos_read"] or bibs["start_list_runners"]):
        share = bibs["runners_with_photos_share"]
        runners = (
            f", {bibs['runners_with_photos']} of {bibs['start_list_runners']} start-list "
            f"runners ({share:.0%}) in a photo"
            if share is not None
            else ""
        )
        lines.append(
            f"bibs:    {plural(bibs['photos_read'], 'photo')} read, "
            f"{bibs['photos_with_bibs']} with bibs, "
            f"{plural(bibs['distinct_bibs'], 'distinct bib')}{runners}, "
            f"{bibs['photos_with_unreadable_text']} with numbers not read as bibs"
        )
    calls = figures.get("rekognition")
    if calls and any(calls["total"][outcome] for outcome in ("accepted", "throttled", "failed")):
        lines.append(render_calls(calls))
    budget = figures.get("budget") or {}
    if budget.get("daily_budget"):
        state = "REACHED: workers claim no photo jobs until 00:00 UTC" if budget["reached"] else ""
        lines.append(
            f"budget:  {budget['daily_budget']} a day; today {budget['billed_calls']} billed "
            f"calls ~{usd_text(budget['estimated_cost_usd'])}" + (f"; {state}" if state else "")
        )
    return "\n".join(lines)


def render_calls(calls: dict) -> str:
    """The Rekognition line: calls today and in all, by operation, and their estimated cost."""

    def period(figures: dict) -> str:
        operations = ", ".join(
            f"{operation} {counts['accepted']}"
            for operation, counts in figures["by_operation"].items()
            if counts["accepted"]
        )
        return (
            f"{plural(figures['accepted'], 'call')} ({operations or 'none accepted'}; "
            f"{figures['throttled']} throttled, {figures['failed']} failed) "
            f"~{usd_text(figures['estimated_cost_usd'])}"
        )

    storage = usd_text(calls["storage_cost_per_month_usd"])
    lines = [
        f"rekognition: today {period(calls['today'])}; in all {period(calls['total'])}; "
        f"{plural(calls['stored_faces'], 'face')} stored ~{storage}/month"
    ]
    for slug, figures in calls.get("by_event", {}).items():
        name = slug or "(before per-event counts)"
        lines.append(f"  event {name}: {render_event_calls(figures)}")
    return "\n".join(lines)


def render_event_calls(figures: dict) -> str:
    """One event's calls and estimated cost, today and in all (stats, `events show`)."""

    def period(counts: dict) -> str:
        cost = counts["estimated_cost_usd"]
        return f"{plural(counts['accepted'], 'call')} ({counts['billed']} billed) ~{usd_text(cost)}"

    return f"today {period(figures['today'])}; in all {period(figures['total'])}"
