"""Reading OpenAPI documents into tools, offline: files, $refs, OpenAPI 3.0's nullable,
what the model never sets, and the requests the tools build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from keel import Tool
from keel.errors import ConfigurationError
from keel.openapi import openapi_tools
from keel.openapi._calls import Masker
from tests.test_tools import context

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Orders", "version": "1"},
    "paths": {
        "/orders/{order_id}": {
            "parameters": [{"$ref": "#/components/parameters/OrderId"}],
            "get": {
                "operationId": "orders.get",
                "summary": "Find an order.",
                "parameters": [
                    {"name": "Authorization", "in": "header", "schema": {"type": "string"}},
                    {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                    {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                ],
            },
            "put": {
                "operationId": "orders.replace",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
                    },
                },
            },
        },
        "/orders/{order_id}/receipt": {
            "post": {
                "operationId": "uploadReceipt",
                "parameters": [{"$ref": "#/components/parameters/OrderId"}],
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": {"type": "object"}}},
                },
            }
        },
    },
    "components": {
        "parameters": {
            "OrderId": {
                "name": "order_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
            }
        },
        "schemas": {
            "Order": {
                "type": "object",
                "properties": {
                    "note": {"type": "string", "nullable": True},
                    "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}},
                    "parent": {"$ref": "#/components/schemas/Order"},
                },
                "required": ["lines"],
            },
            "Line": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
                },
            },
        },
    },
}


def by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {tool.original_name: tool for tool in tools}


def test_operations_become_tools_with_their_parameters_and_body() -> None:
    tools = by_name(openapi_tools(DOCUMENT, base_url="https://orders.example.com"))

    # The upload needs a form body, which a model cannot send as JSON arguments.
    assert sorted(tools) == ["orders.get", "orders.replace"]
    get = tools["orders.get"]
    assert (get.name, get.spec.side_effects, get.spec.safe_to_repeat) == (
        "orders_get",
        "read",
        True,
    )
    # Authorization and cookies are never the model's to set.
    assert list(get.spec.parameters["properties"]) == ["order_id", "X-Trace"]
    replace = tools["orders.replace"].spec
    assert replace.side_effects == "write"
    assert replace.parameters["required"] == ["order_id", "body"]
    assert replace.parameters["$defs"]["Order"]["properties"]["note"]["type"] == ["string", "null"]
    assert replace.validate('{"order_id": "7", "body": {"lines": [], "note": null}}')
    with pytest.raises(ValueError, match=r"body\.lines\.0\.sku: expected string"):
        replace.validate('{"order_id": "7", "body": {"lines": [{"sku": 5}]}}')
    # OpenAPI 3.0's boolean exclusiveMinimum, as JSON Schema's number.
    line = replace.parameters["$defs"]["Line"]["properties"]["quantity"]
    assert line == {"type": "integer", "exclusiveMinimum": 0}
    with pytest.raises(ValueError, match=r"body\.lines\.0\.quantity: 0 is less than or equal"):
        replace.validate('{"order_id": "7", "body": {"lines": [{"quantity": 0}]}}')


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_document_is_read_from_a_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"orders{suffix}"
    path.write_text(yaml.safe_dump(DOCUMENT) if suffix == ".yaml" else json.dumps(DOCUMENT))

    tools = openapi_tools(path, base_url="https://orders.example.com", operations=["orders.get"])

    assert [t.original_name for t in tools] == ["orders.get"]


@pytest.mark.parametrize(
    ("document", "options", "problem"),
    [
        ({"swagger": "2.0", "paths": {}}, {}, "not an OpenAPI 3 document .*swagger 2.0"),
        ({"openapi": "3.1.0"}, {}, "has no 'paths'"),
        ("/nonexistent/openapi.yaml", {}, "cannot read the OpenAPI document"),
        (DOCUMENT, {"operations": ["orders.delete"]}, "no operation 'orders.delete'; it has: "),
        (DOCUMENT, {"base_url": "orders.example.com"}, "base_url must be an http"),
        (DOCUMENT, {"headers_from_env": {"X-Key": "ORDERS_KEY"}, "environ": {}}, "ORDERS_KEY"),
    ],
)
def test_bad_documents_and_settings_are_explained(
    document: Any, options: dict[str, Any], problem: str
) -> None:
    settings: dict[str, Any] = {"base_url": "https://orders.example.com", **options}
    with pytest.raises(ConfigurationError, match=problem):
        openapi_tools(document, **settings)


async def test_requests_keep_path_values_in_one_segment_and_add_the_settings_headers() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        tools = by_name(
            openapi_tools(
                DOCUMENT,
                base_url="https://orders.example.com/v1/",
                headers={"Authorization": "Bearer sk-orders-123456"},
                client=client,
            )
        )
        get = tools["orders.get"]
        arguments = get.spec.validate('{"order_id": "../admin", "X-Trace": "t-1"}')
        assert await get.bind(context(), arguments)() == {"ok": True}

    [request] = seen
    assert str(request.url) == "https://orders.example.com/v1/orders/..%2Fadmin"
    assert request.headers["Authorization"] == "Bearer sk-orders-123456"
    assert request.headers["X-Trace"] == "t-1"


def test_settings_headers_are_masked_in_text_unless_they_carry_no_secret() -> None:
    mask = Masker({"Authorization": "Bearer sk-orders-123456", "Accept": "application/json"})

    assert mask("token sk-orders-123456, sent as Bearer sk-orders-123456; as application/json") == (
        "token [REDACTED], sent as [REDACTED]; as application/json"
    )
