"""Liveness and Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from photoctl import db, face_store
from photoctl import stats as stats_module
from photoctl.api.deps import AdminUser, Svc
from photoctl.api.services import Services

router = APIRouter(tags=["health"])

# Seconds from ingest to findable; buckets span "instant" to "an hour in the queue".
FINDABLE_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@router.get("/healthz")
def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


class _QueueCollector:
    """Figures read from the database at scrape time: the same for every serve process."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        with db.read(self.svc.database) as conn:
            figures = stats_module.collect(conn, self.svc.settings, now)
            findable = face_store.findable_seconds(conn, now - 3600)
        for key, value in figures["queue"].items():
            yield GaugeMetricFamily(f"photoctl_queue_{key}", f"queue figure {key}", value=value)
        for key, value in figures["photos"].items():
            yield GaugeMetricFamily(f"photoctl_photos_{key}", f"photos {key}", value=value)
        yield GaugeMetricFamily(
            "photoctl_photos_faces_failed",
            "photos the face service refused (processed, without faces)",
            value=figures["faces"]["failed"],
        )
        yield from _rekognition_metrics(figures["rekognition"])
        spend = figures["budget"]
        yield GaugeMetricFamily(
            "photoctl_rekognition_budget_reached",
            "1 while today's billed calls reach faces.daily_budget (workers claim no photo jobs)",
            value=int(spend["reached"]),
        )
        yield GaugeMetricFamily(
            "photoctl_rekognition_billed_calls_today",
            "Accepted billed calls today (UTC), every event: what faces.daily_budget counts",
            value=spend["billed_calls"],
        )
        cache = self.svc.cache.stats()
        for key in ("size", "hits", "misses"):
            yield GaugeMetricFamily(
                f"photoctl_cache_{key}", f"response cache {key}", value=cache[key]
            )
        buckets = [
            (str(bound), sum(1 for s in findable if s <= bound)) for bound in FINDABLE_BUCKETS
        ]
        buckets.append(("+Inf", len(findable)))
        yield HistogramMetricFamily(
            "photoctl_time_to_findable_seconds",
            "Seconds from a photo's ingest to its match being visible (last hour)",
            buckets=buckets,
            sum_value=sum(findable),
        )


def _rekognition_metrics(calls: dict) -> Iterator[Metric]:
    counted = CounterMetricFamily(
        "photoctl_rekognition_calls",
        "Rekognition calls by operation and answer (accepted, throttled, failed), all days",
        labels=["operation", "outcome"],
    )
    for operation, counts in calls["total"]["by_operation"].items():
        for outcome in ("accepted", "throttled", "failed"):
            counted.add_metric([operation, outcome], counts[outcome])
    yield counted
    cost = GaugeMetricFamily(
        "photoctl_rekognition_estimated_cost_usd",
        "Estimated cost of the accepted billed calls (prices from the settings)",
        labels=["period"],
    )
    cost.add_metric(["today"], calls["today"]["estimated_cost_usd"])
    cost.add_metric(["total"], calls["total"]["estimated_cost_usd"])
    yield cost
    # Per event (label: its slug; "" for calls counted before per-event counts).
    by_event = calls.get("by_event", {})
    event_calls = CounterMetricFamily(
        "photoctl_rekognition_event_calls",
        "Accepted Rekognition calls by event and operation, all days",
        labels=["event", "operation"],
    )
    event_cost = GaugeMetricFamily(
        "photoctl_rekognition_event_estimated_cost_usd",
        "Estimated cost of an event's accepted billed calls (prices from the settings)",
        labels=["event", "period"],
    )
    for slug, figures in by_event.items():
        for operation, counts in figures["total"]["by_operation"].items():
            event_calls.add_metric([slug, operation], counts["accepted"])
        for period in ("today", "total"):
            event_cost.add_metric([slug, period], figures[period]["estimated_cost_usd"])
    yield event_calls
    yield event_cost
    yield GaugeMetricFamily(
        "photoctl_rekognition_stored_faces", "Faces kept in the collection", calls["stored_faces"]
    )
    yield GaugeMetricFamily(
        "photoctl_rekognition_storage_cost_per_month_usd",
        "Estimated monthly cost of the faces kept in the collection",
        calls["storage_cost_per_month_usd"],
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(_: AdminUser, svc: Svc) -> Response:
    """Prometheus text format (admins)."""
    registry = CollectorRegistry()
    registry.register(_QueueCollector(svc))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
