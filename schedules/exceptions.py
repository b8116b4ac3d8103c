"""Domain errors of schedules; TaskErrors, so main.py's one handler maps them to HTTP."""

from __future__ import annotations

from tasks.exceptions import TaskError


class ScheduleNotFound(TaskError):
    status_code = 404

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} not found")


class ScheduleExists(TaskError):
    status_code = 409

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"a schedule with id {schedule_id!r} exists already")


class InvalidSchedule(TaskError):
    status_code = 422
