"""Which path goes how: passed straight through, or queued at which priority.

GATEWAY_PATHS (exact) and GATEWAY_PATH_PREFIXES (prefixes) name the listed
paths, queued at GATEWAY_LISTED_PRIORITY; every other path is queued at
GATEWAY_DEFAULT_PRIORITY. GATEWAY_PASS_THROUGH paths, and the target's docs,
skip the queue. With GATEWAY_NORMALIZE_PATHS a trailing slash is ignored when
matching (`/reports/` is `/reports`); what is sent is always the path as given.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings, split_list

# The target's own docs stay reachable through the gateway.
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


@dataclass(frozen=True)
class PathRules:
    exact: frozenset[str]
    prefixes: tuple[str, ...]
    pass_through: frozenset[str]
    listed_priority: int
    default_priority: int
    normalize: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> PathRules:
        normalize = settings.gateway_normalize_paths
        key = _key if normalize else str
        return cls(
            exact=frozenset(map(key, split_list(settings.gateway_paths))),
            prefixes=tuple(split_list(settings.gateway_path_prefixes)),
            pass_through=frozenset(
                map(key, [*split_list(settings.gateway_pass_through), *DOCS_PATHS])
            ),
            listed_priority=settings.gateway_listed_priority,
            default_priority=settings.gateway_default_priority,
            normalize=normalize,
        )

    def passes_through(self, path: str) -> bool:
        return self._key(path) in self.pass_through

    def is_listed(self, path: str) -> bool:
        if self._key(path) in self.exact:
            return True
        # `/reports` matches the prefix `/reports/` when a trailing slash is ignored.
        alternate = path + "/" if self.normalize else path
        return any(path.startswith(p) or alternate.startswith(p) for p in self.prefixes)

    def priority(self, path: str) -> int:
        return self.listed_priority if self.is_listed(path) else self.default_priority

    def _key(self, path: str) -> str:
        return _key(path) if self.normalize else path


def _key(path: str) -> str:
    return path.rstrip("/") or "/"
