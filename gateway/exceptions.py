"""Domain errors of the gateway. They are TaskErrors: the gateway app maps them
to JSON answers in one handler (gateway/app.py), as the API does."""

from __future__ import annotations

from typing import Any

from tasks.exceptions import TaskError


class GatewayError(TaskError):
    pass


class NotAGatewayRoute(GatewayError):
    status_code = 404

    def __init__(self, path: str) -> None:
        super().__init__(f"{path[:200]} is not a route of the gateway; /_gateway/ is its own")


class HeadersTooLarge(GatewayError):
    status_code = 431

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the request's headers are {size} bytes, over {limit}")


class NotForwardable(GatewayError):
    """The request cannot become an `http` task (a payload the kind refuses)."""

    status_code = 422


class TargetFailed(GatewayError):
    """Passed straight through: the target could not be reached, or broke the exchange,
    or answered with a body over GATEWAY_MAX_BODY_BYTES."""

    status_code = 502


class TargetTimedOut(GatewayError):
    status_code = 504


class ForwardFailed(GatewayError):
    """Queued: the task ended without an answer to return (its attempts spent on
    connection errors, a body over the cap, a refusal; or it was canceled)."""

    status_code = 502

    def __init__(self, row: Any) -> None:
        super().__init__(
            f"task {row['id']} ended {row['status']}: {row['error'] or 'no answer'}",
            extra={"task_id": str(row["id"]), "status": row["status"], "errors": row["errors"]},
        )


class ForwardTimedOut(GatewayError):
    """Queued: no answer within the wait. A request not started by then never is."""

    status_code = 504

    def __init__(self, row: Any, wait_s: float) -> None:
        if row["status"] == "processing":
            what = "it was sent to the target, which has not answered yet"
        else:  # pending, or expired: it will never be sent
            what = "it was not sent to the target, and never will be"
        super().__init__(
            f"no answer within {wait_s:g}s (task {row['id']}): {what}",
            extra={"task_id": str(row["id"]), "status": row["status"]},
        )
