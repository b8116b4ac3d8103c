"""Who is asking: a key's id, its owner (the tenant) and its scopes, and what follows."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from auth.exceptions import MissingScope, OwnerNotAllowed


class Scope(enum.StrEnum):
    TASKS_WRITE = "tasks:write"
    TASKS_READ = "tasks:read"
    QUEUES_READ = "queues:read"
    CONSUME = "consume"
    ADMIN = "admin"


SCOPE_HELP = {
    Scope.TASKS_WRITE: "create, cancel and retry its owner's tasks",
    Scope.TASKS_READ: "read its owner's tasks (get, list, wait, events)",
    Scope.QUEUES_READ: "queue statistics of its owner's tasks",
    Scope.CONSUME: "lease, ack and nack messages of named queues (external workers)",
    Scope.ADMIN: "everything, for every owner: metrics, dashboard, key management",
}


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller of a request, resolved once per request by `require`."""

    key_id: str | None  # None: AUTH=none, nobody is asked for a key
    owner: str | None
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        # As plain text: an enum member hashes in Python, four times slower.
        return _ADMIN in self.scopes

    @property
    def tenant(self) -> str | None:
        """The owner whose data this caller may see and change; None: every owner
        (an admin key, or anyone with AUTH=none). Hand it to the repositories."""
        return None if self.is_admin else self.owner

    def has(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    def check(self, scopes: list[str]) -> None:
        """MissingScope (403) naming the first scope this caller lacks."""
        for scope in scopes:
            if not self.has(scope):
                raise MissingScope(scope)

    def owner_for(self, requested: str | None) -> str | None:
        """The owner of what this caller creates: its own; another one (`requested`)
        only for an admin. Without a key (AUTH=none) it is `requested`."""
        if self.is_admin:
            return requested if requested is not None else self.owner
        if requested is not None and requested != self.owner:
            raise OwnerNotAllowed()
        return self.owner


_ADMIN: str = Scope.ADMIN.value
ANONYMOUS_ADMIN = Caller(key_id=None, owner=None, scopes=frozenset({Scope.ADMIN}))
