"""OpenAPI tools against a real API served on a loopback port: path, query and body
arguments, errors as results for the model, and an API key that reaches the server but
never the model nor the journal."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from keel import Agent, Runtime, Tool
from keel._core.codec import event_to_dict
from keel._core.events import ToolCallFinished
from keel._tools import ToolError
from keel.openapi import openapi_tools
from keel.testing import MemoryStore, ScriptedModel, call
from tests.openapi.petstore import Store, petstore
from tests.server.live import serving
from tests.test_tools import context

TOKEN = "pk-live-7f3a9c1e2b"


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def api(store: Store) -> Iterator[str]:
    with serving(petstore(TOKEN, store)) as base_url:
        yield base_url


def tools_for(api: str, token: str = TOKEN) -> dict[str, Tool]:
    made = openapi_tools(f"{api}/openapi.json", base_url=api, headers={"X-API-Key": token})
    return {tool.name: tool for tool in made}


async def run(tool: Tool, **arguments: Any) -> Any:
    valid = tool.spec.validate(json.dumps(arguments))
    return await tool.bind(context(), valid)()


def test_each_operation_of_the_served_document_is_a_tool(api: str) -> None:
    tools = tools_for(api)

    assert sorted(tools) == ["createPet", "getPet", "listPets", "whoAmI"]
    assert [tools[n].spec.side_effects for n in ("getPet", "listPets", "createPet")] == [
        "read",
        "read",
        "write",
    ]
    get_pet = tools["getPet"].spec.parameters
    assert get_pet["properties"]["pet_id"]["type"] == "integer"
    assert get_pet["required"] == ["pet_id"]
    # The API key is a header the settings supply: the model never sees it.
    assert all("X-API-Key" not in t.spec.parameters["properties"] for t in tools.values())
    body = tools["createPet"].spec.parameters
    assert body["properties"]["body"] == {"$ref": "#/$defs/Pet"}
    assert body["$defs"]["Pet"]["properties"]["species"]["enum"] == ["dog", "cat"]
    assert "(HTTP GET /pets/{pet_id})" in tools["getPet"].spec.description


async def test_a_path_parameter_reaches_the_server(api: str, store: Store) -> None:
    pet = await run(tools_for(api)["getPet"], pet_id=1)

    assert pet == {"id": 1, "name": "Rex", "species": "dog"}
    assert store.keys == [TOKEN]  # the key from the settings reached the server


async def test_query_parameters_reach_the_server(api: str, store: Store) -> None:
    store.pets[2] = store.pets[1].model_copy(update={"id": 2, "name": "Tom", "species": "cat"})
    list_pets = tools_for(api)["listPets"]

    assert await run(list_pets, species="cat") == [{"id": 2, "name": "Tom", "species": "cat"}]
    assert len(await run(list_pets, limit=1)) == 1


async def test_a_json_body_reaches_the_server(api: str, store: Store) -> None:
    created = await run(tools_for(api)["createPet"], body={"name": "Kit", "species": "cat"})

    assert created == {"id": 2, "name": "Kit", "species": "cat"}
    assert store.pets[2].name == "Kit"


async def test_a_4xx_answer_is_an_error_for_the_model_with_status_and_body(api: str) -> None:
    with pytest.raises(ToolError) as raised:
        await run(tools_for(api)["getPet"], pet_id=99)

    assert raised.value.message == (
        'GET /pets/{pet_id} answered HTTP 404 Not Found: {"detail":"no pet 99"}'
    )


async def test_an_api_key_echoed_by_the_server_is_masked(api: str) -> None:
    assert await run(tools_for(api)["whoAmI"]) == {"key": "[REDACTED]"}
    with pytest.raises(ToolError) as raised:
        await run(tools_for(api, token="pk-wrong-0000")["whoAmI"])
    assert raised.value.message == (
        'GET /whoami answered HTTP 401 Unauthorized: {"detail":"unknown API key [REDACTED]"}'
    )


async def test_an_unreachable_api_is_an_error_that_says_a_write_may_have_happened(
    api: str,
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    tools = {
        t.name: t
        for t in openapi_tools(f"{api}/openapi.json", base_url=closed, headers={"X-API-Key": TOKEN})
    }

    with pytest.raises(ToolError, match=r"^POST /pets failed: ConnectError .*may or may not"):
        await run(tools["createPet"], body={"name": "Kit", "species": "cat"})
    with pytest.raises(ToolError, match=r"^GET /pets/\{pet_id\} failed: ConnectError [^;]*$"):
        await run(tools["getPet"], pet_id=1)


async def test_an_agent_calls_two_operations_and_the_key_stays_out_of_the_journal(
    api: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model = ScriptedModel(
        [
            call("createPet", body={"name": "Kit", "species": "cat"}),
            call("getPet", pet_id="2"),  # a string: refused before any request
            call("getPet", pet_id=2),
            call("whoAmI"),
            "Kit the cat is pet 2.",
        ]
    )
    agent = Agent(
        name="pets",
        model=model,
        tools=openapi_tools(
            f"{api}/openapi.json",
            base_url=api,
            headers_from_env={"X-API-Key": "PETS_KEY"},
            environ={"PETS_KEY": TOKEN},
        ),
    )
    runtime = Runtime(store=MemoryStore())

    result = await runtime.run(agent, "Add Kit the cat, then look her up")

    assert (result.status, result.output) == ("completed", "Kit the cat is pet 2.")
    assert store.keys == [TOKEN, TOKEN, TOKEN]  # three requests: the wrong call sent none
    events = await runtime.store.load(result.run_id)
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [json.loads(f.result) if f.error is None else f.error.code for f in finished] == [
        {"id": 2, "name": "Kit", "species": "cat"},
        "tool_arguments_invalid",
        {"id": 2, "name": "Kit", "species": "cat"},
        {"key": "[REDACTED]"},
    ]
    journal = json.dumps([event_to_dict(e) for e in events])
    assert TOKEN not in journal
    assert TOKEN not in json.dumps([str(r) for r in model.requests])
    assert "HTTP Request: POST" in caplog.text  # httpx logged the calls, without the key
    assert TOKEN not in caplog.text
