"""`photoctl stats` and `photoctl jobs`: what the queue is doing, and acting on single jobs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import click

from photoctl import db, queue
from photoctl.cli.common import (
    App,
    PhotoctlGroup,
    UsageProblem,
    json_option,
    pass_app,
    response_cache,
    watch_loop,
)
from photoctl.models import JobState
from photoctl.wording import plural


@click.command()
@json_option("Print the stats object as JSON (one line per --watch round, with a timestamp).")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Print again every SECONDS until interrupted (Ctrl-C or SIGTERM: exit 0).",
)
@pass_app
def stats(app: App, as_json: bool, watch: float | None) -> None:
    """Queue, photo, cache and time-to-findable figures (as GET /api/admin/queue/stats)."""
    from photoctl import stats as stats_module

    engine = app.engine()

    def show(number: int) -> None:
        if number and not as_json:
            click.echo("")  # a blank line between rounds of the human-readable figures
        with db.read(engine) as conn:
            figures = stats_module.collect(
                conn, app.settings, cache_stats=response_cache(app).stats()
            )
        click.echo(json.dumps(figures) if as_json else stats_module.render(figures))

    watch_loop(watch, show)


@click.group(cls=PhotoctlGroup)
def jobs() -> None:
    """Inspect and act on jobs."""


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@jobs.command("list")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only this state.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many jobs.",
)
@json_option("One JSON object per line.")
@pass_app
def jobs_list(app: App, state: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first.

    \b
    Example:
      photoctl jobs list --state failed
    """
    with db.read(app.engine()) as conn:
        rows = queue.list_jobs(conn, state, limit)
    for job in rows:
        if as_json:
            click.echo(json.dumps(job.__dict__))
        else:
            error = f"  {job.last_error}" if job.last_error else ""
            click.echo(
                f"{job.id}  {job.state:<8}  attempts {job.attempts}  "
                f"{job.filename or job.kind}{error}"
            )


@jobs.command("show")
@click.argument("job_id")
@json_option("Print the job as one JSON object (times as epoch seconds).")
@pass_app
def jobs_show(app: App, job_id: str, as_json: bool) -> None:
    """Everything about one job (an id or a unique prefix of one)."""
    with db.read(app.engine()) as conn:
        job = queue.get_job(conn, job_id)
    if as_json:
        click.echo(json.dumps(job.__dict__))
        return
    for label, value in [
        ("id", job.id),
        ("kind", job.kind),
        ("photo", job.photo_id),
        ("file", job.filename),
        ("state", job.state),
        ("attempts", job.attempts),
        ("created", _when(job.created_at)),
        ("run at", _when(job.run_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("lease until", _when(job.lease_expires_at)),
        ("worker", job.worker_id or "-"),
        ("last error", job.last_error or "-"),
    ]:
        click.echo(f"{label + ':':<13}{value}")


@jobs.command("retry")
@click.argument("job_ids", nargs=-1)
@click.option("--failed", is_flag=True, help="Retry every failed job.")
@json_option('Print {"queued_again": N} on stdout.')
@pass_app
def jobs_retry(app: App, job_ids: tuple[str, ...], failed: bool, as_json: bool) -> None:
    """Queue failed (or done) jobs again with fresh attempts.

    \b
    Examples:
      photoctl jobs retry --failed
      photoctl jobs retry 8f3a1c2d
    """
    if not job_ids and not failed:
        raise UsageProblem("give job ids or --failed")
    with db.write(app.engine()) as conn:
        _, count = queue.retry_named_jobs(conn, job_ids, failed=failed)
    if as_json:
        click.echo(json.dumps({"queued_again": count}))
    app.say(f"{plural(count, 'job')} queued again")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        match = _DURATION.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a duration like 90s, 30m, 12h or 7d", param, ctx)
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@jobs.command("prune")
@click.option(
    "--older-than",
    type=Duration(),
    required=True,
    help="Age of finished jobs to delete, e.g. 7d, 12h.",
)
@click.option(
    "--include-failed", is_flag=True, help="Delete failed jobs too (their reasons are lost)."
)
@json_option('Print {"pruned": N} on stdout.')
@pass_app
def jobs_prune(app: App, older_than: float, include_failed: bool, as_json: bool) -> None:
    """Delete finished jobs older than a duration (done ones; failed ones only if asked).

    With --include-failed, an upload whose job failed is deleted too: its photo row and its
    stored file (on disk or in the storage bucket)."""
    from photoctl.pruning import prune
    from photoctl.storage_identity import ensure_same

    ensure_same(app.settings, app.engine())  # it deletes stored files: the right ones only
    report = prune(app.engine(), app.settings, older_than, include_failed=include_failed)
    if as_json:
        click.echo(json.dumps({"pruned": report.jobs, "uploads_deleted": report.uploads_deleted}))
    app.say(
        f"{plural(report.jobs, 'job')} pruned, "
        f"{plural(report.uploads_deleted, 'failed upload')} deleted"
    )
