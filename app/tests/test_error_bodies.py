"""The one error shape: every error answer is {"detail": "<sentence>"}, request
validation adds `errors`, and the OpenAPI document says exactly that."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from app.error_bodies import MAX_BODY_BYTES, error_responses
from app.http import BodySizeLimit, install_error_handlers


class Thing(BaseModel):
    name: str = Field(min_length=1)
    size: int = Field(ge=0)


def make_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodySizeLimit)
    install_error_handlers(app)
    things = APIRouter(prefix="/things")  # as features add theirs

    @things.post("", status_code=201, responses=error_responses((409, "Taken.")))
    async def create(thing: Thing) -> Thing:
        return thing

    @things.get("", responses=error_responses(503))
    async def listing(limit: int = 10) -> list[Thing]:
        return []

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(things)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"], body
    return dict(body)


async def test_a_schema_problem_is_one_sentence_and_a_list_of_errors(
    client: httpx.AsyncClient,
) -> None:
    body = error_of(await client.post("/things", json={"name": "", "size": -1}), 422)
    assert "body.name" in body["detail"] and "1 more" in body["detail"], body
    assert [error["loc"] for error in body["errors"]] == [["body", "name"], ["body", "size"]]
    assert all(set(error) == {"loc", "msg", "type"} for error in body["errors"])
    query = error_of(await client.get("/things?limit=many"), 422)
    assert query["errors"][0]["loc"] == ["query", "limit"]


async def test_malformed_json_is_named(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/things", content=b'{"name": "x', headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in error_of(response, 422)["detail"]


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", None]
)
async def test_a_body_that_is_not_declared_json_is_told_json_is_expected(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    body = json.dumps({"name": "x", "size": 1})
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/things", content=body, headers=headers)
    refused = error_of(response, 422)
    assert "JSON body is expected" in refused["detail"], refused
    assert [error["type"] for error in refused["errors"]] == ["json_expected"]


async def test_json_declared_as_json_is_read(client: httpx.AsyncClient) -> None:
    body = json.dumps({"name": "x", "size": 1}).encode()
    for media in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await client.post("/things", content=body, headers={"content-type": media})
        assert response.status_code == 201, response.text


async def test_starlette_answers_take_the_same_shape(client: httpx.AsyncClient) -> None:
    error_of(await client.get("/nowhere"), 404)
    refused = await client.delete("/things")
    error_of(refused, 405)
    # Two routes share the path: Allow names the methods of both.
    assert {method.strip() for method in refused.headers["allow"].split(",")} == {"GET", "POST"}


async def test_an_oversized_or_unreadable_body_is_refused_in_the_same_shape(
    client: httpx.AsyncClient,
) -> None:
    big = json.dumps({"name": "x" * MAX_BODY_BYTES, "size": 1})
    error_of(await client.post("/things", content=big), 413)
    not_utf8 = b'{"name": "\xff\xfe", "size": 1}'
    headers = {"content-type": "application/json"}
    error_of(await client.post("/things", content=not_utf8, headers=headers), 400)


def test_openapi_documents_the_error_body_on_every_error_answer() -> None:
    schema = make_app().openapi()
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert "ValidationError" not in components
    assert components["ErrorBody"]["required"] == ["detail"]
    assert components["ErrorBody"]["properties"]["detail"]["type"] == "string"
    assert components["ValidationErrorBody"]["properties"]["errors"]["type"] == "array"
    post = schema["paths"]["/things"]["post"]["responses"]
    assert set(post) == {"201", "400", "409", "413", "422"}
    assert post["409"]["description"] == "Taken."
    listing = schema["paths"]["/things"]["get"]["responses"]
    assert set(listing) == {"200", "422", "503"}
    assert listing["503"]["headers"]["Retry-After"]["required"] is True
    for operations in schema["paths"].values():
        for operation in operations.values():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    wanted = "ValidationErrorBody" if code == "422" else "ErrorBody"
                    assert ref == f"#/components/schemas/{wanted}", (code, operation)
    assert set(schema["paths"]["/plain"]["get"]["responses"]) == {"200"}
