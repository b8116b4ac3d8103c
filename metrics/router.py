"""GET /metrics, in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from metrics import snapshot
from metrics.collector import SnapshotCollector
from tasks.dependencies import ResourcesDep
from tasks.schemas import ErrorOut

# Every route of the router is guarded by what this list holds (access control's).
router = APIRouter(tags=["metrics"], dependencies=[])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format.",
        },
        503: {"model": ErrorOut, "description": "PostgreSQL or Redis is unreachable."},
    },
    summary="Prometheus metrics",
)
async def metrics(resources: ResourcesDep) -> Response:
    """Counters, histograms and gauges of the whole deployment, read from the
    shared stores: every API process answers the same numbers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(await snapshot.take(resources)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
