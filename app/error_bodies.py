"""The one shape of every error answer, and the OpenAPI entries that document it.

Every error body is `{"detail": "<one human sentence>"}`. A 422 for a request
that does not fit the schema also carries `errors`, one entry per problem
(`loc`, `msg`, `type`). Routes document their error answers with
`responses=error_responses(404, (409, "why"), 503)`; FastAPI's own 422 entry
(HTTPValidationError, whose `detail` is a list) is replaced in the OpenAPI
document by the body the API really sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.openapi_params import plain_parameters

MAX_BODY_BYTES = 1024 * 1024


class ErrorBody(BaseModel):
    """What every error answer carries."""

    detail: str = Field(
        description="What went wrong, as one sentence for a person.",
        examples=["task 019a8f3c-5a7e-7c11-9d2e-6f1b2a3c4d5e not found"],
    )


class FieldError(BaseModel):
    """One way a request did not fit the schema."""

    loc: list[str | int] = Field(
        description="Where: `body`, `query`, `path` or `header`, then field names or positions."
    )
    msg: str = Field(description="What is wrong there.")
    type: str = Field(description="A stable code for the kind of problem, e.g. `missing`.")


class ValidationErrorBody(ErrorBody):
    """A 422: `errors` lists every problem when the request did not fit the schema;
    a request refused by a rule (an unknown kind, say) carries `detail` only."""

    errors: list[FieldError] = Field(
        default_factory=list,
        description="Every problem found, when the request did not fit the schema.",
    )


RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}

DESCRIPTIONS: dict[int, str] = {
    400: "The request body could not be read (it is not UTF-8).",
    404: "Not found.",
    409: "The resource's state does not allow this.",
    413: f"The request body is over {MAX_BODY_BYTES} bytes.",
    422: "The request is invalid; `errors` lists the problems when it does not fit the schema.",
    429: "Rate limit reached; retry after `Retry-After` seconds.",
    503: "A store is unreachable or the service is overloaded; retry after `Retry-After` seconds.",
}


def error_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for error answers, each documented with the error body:
    `error_responses(404, (409, "The task has already finished."), 503)`."""
    responses: dict[int | str, dict[str, Any]] = {}
    for entry in statuses:
        status, description = entry if isinstance(entry, tuple) else (entry, _describe(entry))
        spec: dict[str, Any] = {
            "model": ValidationErrorBody if status == 422 else ErrorBody,
            "description": description,
        }
        if status in (429, 503):
            spec["headers"] = {"Retry-After": RETRY_AFTER}
        responses[status] = spec
    return responses


def _describe(status: int) -> str:
    return DESCRIPTIONS.get(status) or HTTPStatus(status).phrase


def error_json(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An error answer in the one shape; `extra` adds what one route documents
    beside `detail` (POST /run's task_id, say)."""
    body: dict[str, Any] = {"detail": detail, **(extra or {})}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


# OpenAPI -------------------------------------------------------------------

_REF = "#/components/schemas/"
_FASTAPI_422 = _REF + "HTTPValidationError"


def with_error_bodies(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi` that documents the error body on every error answer (and
    optional parameters without the null that HTTP cannot send)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_error_bodies(plain_parameters(build()))
        return app.openapi_schema

    return openapi


def document_error_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx/5xx answer gets the error body (422: with `errors`); FastAPI's
    list-shaped 422 is dropped; an operation with a body also documents 400 (a
    body FastAPI cannot decode) and 413 (the size limit applies to every route)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, ValidationErrorBody):
        model_schema = model.model_json_schema(ref_template=_REF + "{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            _document_operation(operation)
    components.pop("HTTPValidationError", None)
    if json.dumps(_REF + "ValidationError") not in json.dumps(schema):
        components.pop("ValidationError", None)
    return schema


def _document_operation(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    if "requestBody" in operation:
        for status in (400, 413):  # a body that is not UTF-8; one over the size limit
            responses.setdefault(str(status), {"description": _describe(status)})
    for code, response in responses.items():
        if not code.isdigit() or int(code) < 400:
            continue
        model = ValidationErrorBody if code == "422" else ErrorBody
        content = response.setdefault("content", {})
        if not content:
            content["application/json"] = {}
        media = content.get("application/json")
        if media is not None and media.get("schema", {"$ref": _FASTAPI_422}) == {
            "$ref": _FASTAPI_422
        }:
            media["schema"] = {"$ref": _REF + model.__name__}
