"""Optional parameters in the OpenAPI document as HTTP can carry them.

FastAPI documents an optional query or header parameter (`str | None = None`)
as `anyOf: [{...}, {"type": "null"}]`. A query string or a header cannot carry
a JSON null: leaving the parameter out is how a client says "none". So the
null branch is dropped, and a client generator or a fuzzer sends either a
value that fits or nothing (never the text `null`, which the API refuses).
"""

from __future__ import annotations

from typing import Any

_NULL = {"type": "null"}


def plain_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if not parameter.get("required"):
                    _drop_null(parameter.get("schema", {}))
    return schema


def _drop_null(schema: dict[str, Any]) -> None:
    branches = schema.get("anyOf")
    if not isinstance(branches, list) or _NULL not in branches:
        return
    rest = [branch for branch in branches if branch != _NULL]
    del schema["anyOf"]
    if len(rest) == 1:
        schema.update(rest[0])  # the keys beside anyOf (title, default) stay
    else:
        schema["anyOf"] = rest
