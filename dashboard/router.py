"""GET /dashboard and its pages: HTML rendered here, data through the services.

The pages carry no inline script or style, so they run under a
Content-Security-Policy without 'unsafe-inline'; their JavaScript (static/)
calls the public API for every action and follows GET /events for live views.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Security
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

from app.config import QUEUE_PATTERN
from app.error_bodies import ErrorBody, error_responses
from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES
from dashboard import filters as template_filters
from dashboard import views
from dashboard.access import require_page
from tasks.dependencies import ResourcesDep, SessionDep, TaskDep
from tasks.models import TaskStatus
from tasks.schemas import KIND_PATTERN, OWNER_PATTERN, UUID_PATTERN, TaskOut

HERE = FilePath(__file__).resolve().parent
STATIC = {path.name: path for path in (HERE / "static").iterdir() if path.is_file()}
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)

templates = Jinja2Templates(directory=HERE / "templates")
template_filters.install(templates.env)

# An admin key for every page and file (anyone with AUTH=none): the pages show
# every owner's tasks. A browser signs in at /dashboard/login (dashboard/login.py).
router = APIRouter(
    prefix="/dashboard",
    tags=["dashboard"],
    dependencies=[Security(require_page, scopes=[Scope.ADMIN])],
    responses={
        303: {
            "model": ErrorBody,
            "description": "AUTH=keys, a browser (Accept: text/html) with neither a key nor"
            " a valid sign-in: to the sign-in page (`Location`), which sends it back.",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **AUTH_RESPONSES,
    },
)

_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The page."}
}
# Errors are JSON, as everywhere in the API
_HTML = {**_PAGE, **error_responses(503)}
_FILTERED = {**_HTML, **error_responses((422, "A bad filter or cursor."))}
# The last id of the page before: a schedule's or a topic's (never a NUL, which
# PostgreSQL's text cannot hold).
Cursor = Annotated[str | None, Query(pattern=KIND_PATTERN)]
TaskCursor = Annotated[str | None, Query(pattern=UUID_PATTERN)]


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    signed_in = getattr(request.state, "signed_in", False)  # by the sign-in cookie
    context = {"signed_in": signed_in, **context}
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    # Not no-referrer: a browser that leaves Origin out of the pages' own calls
    # then still sends the Referer that a call made with the sign-in cookie must
    # show (auth/session.py); other sites still get none.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@router.get("", responses=_HTML, summary="Dashboard: overview")
async def overview(request: Request, resources: ResourcesDep) -> HTMLResponse:
    """Per queue: ready, scheduled, processing, failed in the last hour, oldest
    ready age; and a chart of the last 15 minutes' throughput."""
    rows = await views.overview(resources)
    return page(request, "overview.html", nav="overview", rows=rows)


@router.get(
    "/throughput",
    responses=error_responses(503),
    summary="Dashboard: events per minute, last 15 minutes",
)
async def throughput(resources: ResourcesDep) -> JSONResponse:
    """`{"minutes": [start, ...], "now", "series": {"created": [...], "completed":
    [...], "failed": [...]}}`, oldest minute first, the current one last."""
    return JSONResponse(await views.throughput(resources), headers={"Cache-Control": "no-store"})


@router.get(
    "/tasks",
    responses=_FILTERED,
    summary="Dashboard: tasks",
)
async def tasks(
    request: Request,
    session: SessionDep,
    status: TaskStatus | None = None,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
    queue: Annotated[str | None, Query(pattern=QUEUE_PATTERN)] = None,
    owner: Annotated[str | None, Query(pattern=OWNER_PATTERN)] = None,
    cursor: TaskCursor = None,
) -> HTMLResponse:
    """Newest first, filtered, a keyset page at a time; live from /events."""
    filters = views.Filters(status, kind, queue, owner)
    items, next_cursor = await views.task_page(session, filters, cursor)
    return page(
        request, "tasks.html", nav="tasks", items=items, filters=filters,
        statuses=list(TaskStatus), cursor=cursor, next_cursor=next_cursor,
    )  # fmt: skip


@router.get(
    "/tasks/{task_id}",
    responses={**_HTML, **error_responses((404, "No such task."), (422, "Not a task id."))},
    summary="Dashboard: one task",
)
async def task(request: Request, task: TaskDep) -> HTMLResponse:
    """Payload, result, every attempt's error, timing, worker and lease; Cancel
    and Retry buttons that call the API."""
    return page(request, "task.html", nav="tasks", task=TaskOut.model_validate(task))


@router.get("/workers", responses=_HTML, summary="Dashboard: workers")
async def workers(request: Request, resources: ResourcesDep) -> HTMLResponse:
    """Live workers: slots busy and total, queues served, last heartbeat."""
    return page(request, "workers.html", nav="workers", workers=await views.workers(resources))


@router.get(
    "/dead",
    responses=_FILTERED,
    summary="Dashboard: dead letters",
)
async def dead(
    request: Request,
    session: SessionDep,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
    queue: Annotated[str | None, Query(pattern=QUEUE_PATTERN)] = None,
    cursor: TaskCursor = None,
) -> HTMLResponse:
    """Failed tasks, newest first, to retry one by one or in bulk."""
    filters = views.Filters(TaskStatus.FAILED, kind, queue)
    items, next_cursor = await views.task_page(session, filters, cursor)
    return page(
        request, "dead.html", nav="dead", items=items, filters=filters, cursor=cursor,
        next_cursor=next_cursor,
    )  # fmt: skip


@router.get("/schedules", responses=_FILTERED, summary="Dashboard: schedules")
async def schedules(
    request: Request, resources: ResourcesDep, cursor: Cursor = None
) -> HTMLResponse:
    """Each schedule: its timing, next and last run, and its last task's status."""
    items, next_cursor = await views.schedules(resources, cursor)
    return page(request, "schedules.html", nav="schedules", items=items, next_cursor=next_cursor)


@router.get("/topics", responses=_FILTERED, summary="Dashboard: topics and queues")
async def topics(request: Request, resources: ResourcesDep, cursor: Cursor = None) -> HTMLResponse:
    """Topics with their queues; declared queues with undelivered, leased and dead counts."""
    return page(request, "topics.html", nav="topics", **await views.topics(resources, cursor))


@router.get(
    "/static/{name}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"text/css": {}, "text/javascript": {}},
            "description": "A stylesheet or a script.",
        },
        **error_responses((404, "No such file.")),
    },
    summary="Dashboard: its script and style files",
)
async def static(name: Annotated[str, Path(max_length=64)]) -> FileResponse:
    path = STATIC.get(name)
    if path is None:
        raise HTTPException(404, f"no dashboard file named {name!r}")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=300"})
