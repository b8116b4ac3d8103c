"""GET /workers: the live workers, from their heartbeat reports (tasks/presence.py)."""

from __future__ import annotations

from fastapi import APIRouter

from app.error_bodies import error_responses
from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES, needs
from tasks import presence
from tasks.dependencies import ResourcesDep
from tasks.schemas import WorkerOut, WorkersOut

# Workers serve every owner's tasks, so any key that may watch queues may see them.
workers_router = APIRouter(
    prefix="/workers",
    tags=["workers"],
    dependencies=needs(Scope.QUEUES_READ),
    responses=AUTH_RESPONSES,
)


@workers_router.get(
    "",
    response_model=WorkersOut,
    responses=error_responses((503, "Redis is unreachable; retry after `Retry-After` seconds.")),
    summary="List live workers",
)
async def list_workers(resources: ResourcesDep) -> WorkersOut:
    """Each worker whose heartbeat report has not expired (reports expire after
    WORKER_LEASE_SECONDS): the queues it serves, its slots busy and total, when it
    last reported and started. A stopped worker drops out at once."""
    reports = await presence.live_workers(resources)
    return WorkersOut(workers=[WorkerOut.from_report(report) for report in reports])
