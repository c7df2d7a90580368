"""From an MCP server's listing to Keel tools: names, durability from the annotations and
their overrides, strict arguments, results as text. No server needed."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import mcp_types
import pytest

from keel._core.toolspec import ToolArgumentsError
from keel.errors import ConfigurationError, ToolDefinitionError
from keel.mcp import MCPServer, RemoteTool
from keel.mcp._convert import build_tool, keel_name, result_text

SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "integer", "minimum": 1}, "note": {"type": "string"}},
    "required": ["amount"],
}


async def never(name: str, arguments: dict[str, Any], repeatable: bool, key: str) -> Any:
    raise AssertionError("not called")


def remote(**hints: bool | None) -> RemoteTool:
    return RemoteTool(name="charge", description="Charge.", input_schema=SCHEMA, **hints)


def test_names_are_made_safe_for_every_provider_and_stay_distinct() -> None:
    assert keel_name("read_file", None) == "read_file"
    assert keel_name("read_file", "fs") == "fs_read_file"
    dotted, spaced = keel_name("files.read", None), keel_name("files read", None)
    assert dotted.startswith("files_read_")
    assert dotted != spaced
    long = keel_name("x" * 100, "server")
    assert len(long) == 64
    assert all(c.isalnum() or c in "_-" for c in dotted + long)


@pytest.mark.parametrize(
    ("hints", "side_effects", "idempotent", "safe"),
    [
        ({"read_only_hint": True}, "read", False, True),
        ({"idempotent_hint": True}, "write", True, True),
        ({}, "write", False, False),
        ({"read_only_hint": False, "destructive_hint": True}, "write", False, False),
    ],
)
def test_durability_comes_from_the_annotations(
    hints: dict[str, bool], side_effects: str, idempotent: bool, safe: bool
) -> None:
    spec = build_tool(remote(**hints), name="charge", caller=never).spec
    assert (spec.side_effects, spec.idempotent, spec.safe_to_repeat) == (
        side_effects,
        idempotent,
        safe,
    )
    assert spec.requires_approval is False


def test_overrides_correct_the_annotations_by_mapping_or_callable() -> None:
    mapped = build_tool(
        remote(read_only_hint=True),
        name="charge",
        caller=never,
        overrides={"charge": {"side_effects": "write", "requires_approval": True}},
    ).spec
    assert (mapped.safe_to_repeat, mapped.requires_approval) == (False, True)

    chosen = build_tool(
        remote(), name="charge", caller=never, overrides=lambda tool: {"idempotent": True}
    ).spec
    assert chosen.safe_to_repeat


def test_destructive_tools_need_approval_when_asked() -> None:
    spec = build_tool(remote(), name="charge", caller=never, approve_destructive=True).spec
    assert spec.requires_approval is True
    gentle = build_tool(
        remote(destructive_hint=False), name="charge", caller=never, approve_destructive=True
    ).spec
    assert gentle.requires_approval is False


def test_a_misspelt_override_or_option_is_refused_with_the_right_names() -> None:
    with pytest.raises(ConfigurationError, match=r"idempotnet.*use description, idempotent"):
        build_tool(remote(), name="charge", caller=never, overrides={"charge": {"idempotnet": 1}})
    with pytest.raises(ConfigurationError, match="unknown MCPServer option"):
        MCPServer.stdio("python", retry=3)
    with pytest.raises(ConfigurationError, match="http"):
        MCPServer.http("127.0.0.1:8000/mcp")


def test_retries_on_a_tool_that_is_not_safe_to_repeat_are_refused() -> None:
    with pytest.raises(ToolDefinitionError, match="not safe to repeat"):
        build_tool(remote(), name="charge", caller=never, overrides={"charge": {"retries": 2}})


def test_arguments_are_checked_strictly_against_the_server_schema() -> None:
    spec = build_tool(remote(), name="charge", caller=never).spec
    assert spec.validate('{"amount": 3}') == {"amount": 3}
    for bad, says in [
        ('{"amount": "3"}', 'amount: expected integer, got string "3"'),
        ('{"amount": 3.0}', "amount: expected integer, got number 3.0"),
        ('{"amount": 0}', "amount: 0 is less than the minimum of 1"),
        ("{}", "missing required argument 'amount'"),
        ("[1]", "must be a JSON object"),
        ("{nope", "not valid JSON"),
    ]:
        with pytest.raises(ToolArgumentsError) as caught:
            spec.validate(bad)
        assert says in caught.value.message


def test_a_schema_that_is_not_json_schema_is_refused() -> None:
    broken = RemoteTool(name="x", description="", input_schema={"type": "object", "required": 3})
    with pytest.raises(ToolDefinitionError, match="not valid JSON Schema"):
        build_tool(broken, name="x", caller=never)


def test_results_read_as_text_with_structured_content_when_there_is_no_text() -> None:
    text = mcp_types.CallToolResult(content=[mcp_types.TextContent(text="hello")])
    structured = mcp_types.CallToolResult(content=[], structured_content={"celsius": 21})
    image = mcp_types.CallToolResult(
        content=[mcp_types.ImageContent(data="AAAA", mime_type="image/png")]
    )
    assert result_text(text) == "hello"
    assert result_text(structured) == '{"celsius":21}'
    assert result_text(image) == "[image: image/png data]"


def test_without_the_mcp_package_the_import_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['mcp'] = None\n"  # what Python does for a package that is not installed
        "try:\n"
        "    import keel.mcp\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert "pip install 'keel-runtime[mcp]'" in done.stdout
