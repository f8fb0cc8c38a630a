"""Admin routes: queue figures, one job, cache clearing, job retry."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from photoctl import db, queue
from photoctl import stats as stats_module
from photoctl.api.deps import AdminUser, Svc
from photoctl.api.services import Services
from photoctl.errors import NotFound

router = APIRouter(tags=["admin"])


def full_stats(svc: Services) -> dict:
    with db.read(svc.database) as conn:
        return stats_module.collect(conn, svc.settings, cache_stats=svc.cache.stats())


@router.get("/api/admin/queue/stats")
def queue_stats(_: AdminUser, svc: Svc) -> dict:
    """Queue, cache and photo figures (as `photoctl stats --json`)."""
    return full_stats(svc)


@router.get("/api/admin/queue/jobs/{job_id}")
def job(job_id: str, _: AdminUser, svc: Svc) -> dict:
    """One job: state, attempts, timestamps, last error."""
    try:
        with db.read(svc.database) as conn:
            return queue.get_job(conn, job_id).__dict__
    except NotFound:
        raise HTTPException(404, "Job not found") from None


@router.post("/api/admin/cache/clear")
def clear_cache(_: AdminUser, svc: Svc) -> dict:
    """Empty the response cache of every serve process."""
    return {"cleared": svc.cache.clear()}


@router.post("/api/admin/jobs/{job_id}/retry")
def retry_job(job_id: str, _: AdminUser, svc: Svc) -> dict:
    """Queue a failed (or done) job again with fresh attempts."""
    try:
        with db.write(svc.database) as conn:
            (full_id,), count = queue.retry_named_jobs(conn, [job_id])
    except NotFound:
        raise HTTPException(404, "Job not found") from None
    if count == 0:
        raise HTTPException(409, "Job is queued or running; only finished jobs can be retried")
    return {"retried": count, "job_id": full_id}
