"""GET /metrics, in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.error_bodies import error_responses
from auth.dependencies import AUTH_RESPONSES, require_metrics
from metrics import snapshot
from metrics.collector import SnapshotCollector
from tasks.dependencies import ResourcesDep

# METRICS_TOKEN as a bearer token (a scraper's), or an admin key; anyone with AUTH=none.
router = APIRouter(
    tags=["metrics"], dependencies=[Depends(require_metrics)], responses=AUTH_RESPONSES
)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format.",
        },
        **error_responses(503),
    },
    summary="Prometheus metrics",
)
async def metrics(resources: ResourcesDep) -> Response:
    """Counters, histograms and gauges of the whole deployment, read from the
    shared stores: every API process answers the same numbers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(await snapshot.take(resources)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
