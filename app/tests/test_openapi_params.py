"""Optional parameters are documented as HTTP carries them: absent, never null."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import FastAPI, Header, Query

from app.http import install_error_handlers
from app.openapi_params import plain_parameters


def test_optional_query_and_header_parameters_have_no_null_branch() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/things")
    async def things(
        name: Annotated[str | None, Query(pattern="^[a-z]+$")] = None,
        thing_id: uuid.UUID | None = None,
        tag: Annotated[str | int | None, Query()] = None,
        key: Annotated[str | None, Header(alias="Thing-Key")] = None,
    ) -> list[str]:
        return []

    parameters = {
        p["name"]: p["schema"] for p in app.openapi()["paths"]["/things"]["get"]["parameters"]
    }
    assert parameters["name"] == {"type": "string", "pattern": "^[a-z]+$", "title": "Name"}
    assert parameters["thing_id"]["format"] == "uuid"
    assert parameters["tag"]["anyOf"] == [{"type": "string"}, {"type": "integer"}]
    assert parameters["Thing-Key"]["type"] == "string"
    assert "null" not in str(parameters)


def test_a_required_parameter_and_a_body_are_left_as_they_are() -> None:
    nullable = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    schema = {
        "paths": {
            "/x": {
                "post": {
                    "parameters": [
                        {"name": "q", "in": "query", "required": True, "schema": dict(nullable)}
                    ],
                    "requestBody": {"content": {"application/json": {"schema": dict(nullable)}}},
                }
            }
        }
    }
    operation = plain_parameters(schema)["paths"]["/x"]["post"]
    assert operation["parameters"][0]["schema"] == nullable
    assert operation["requestBody"]["content"]["application/json"]["schema"] == nullable
