"""The scrubber masks the secrets a runtime knows, however an event's JSON escapes them, and
leaves events without them untouched; settings list the secrets they hold."""

from __future__ import annotations

import json
from pathlib import Path

from keel import KeelSettings, Usage
from keel._runtime.scrubbing import REDACTED, Scrubber
from keel.events import ModelResponded
from keel.messages import AssistantMessage, ToolCall

SECRET = 'p@ss"word\\with-escapes'


def test_a_secret_inside_tool_call_arguments_is_masked() -> None:
    event = ModelResponded(
        step=1,
        model="m",
        message=AssistantMessage(
            content=f"using {SECRET}",
            tool_calls=(
                ToolCall(
                    id="c",
                    name="t",
                    arguments=json.dumps({"k": SECRET}),
                ),
            ),
        ),
        usage=Usage(),
        at=0.0,
    )
    scrubbed = Scrubber([SECRET]).event(event)

    assert isinstance(scrubbed, ModelResponded)
    assert scrubbed.message.content == f"using {REDACTED}"
    assert SECRET not in scrubbed.message.tool_calls[0].arguments
    assert REDACTED in scrubbed.message.tool_calls[0].arguments


def test_events_without_secrets_and_short_values_are_left_alone() -> None:
    event = ModelResponded(
        step=1, model="m", message=AssistantMessage(content="hello"), usage=Usage(), at=0.0
    )
    assert Scrubber(["not-in-there"]).event(event) is event
    assert not Scrubber(["short"])  # too short to be treated as a secret
    assert Scrubber(["short"]).text("short answer") == "short answer"


def test_settings_list_their_secrets(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# current\nkey-from-the-file-000\n")
    settings = KeelSettings.from_environ(
        {
            "OPENAI_API_KEY": "sk-openai-123456",
            "ANTHROPIC_API_KEY": "sk-ant-123456",
            "KEEL_DB": "postgresql://keel:db%20secret@127.0.0.1/db",
            "KEEL_REDIS_URL": "redis://:redis-secret@127.0.0.1:6379/0",
            "KEEL_ENCRYPTION_KEY_FILE": str(keys),
        }
    )
    assert set(settings.secret_values()) == {
        "sk-openai-123456",
        "sk-ant-123456",
        "db secret",
        "redis-secret",
        "key-from-the-file-000",
    }


def database_bytes(directory: Path) -> bytes:
    """Every byte of the SQLite files in ``directory`` (the database and its WAL)."""
    return b"".join(p.read_bytes() for p in directory.glob("keel.db*"))


async def test_a_redactor_keeps_personal_data_out_of_the_journal_but_not_out_of_tool_calls(
    tmp_path: Path,
) -> None:
    from keel import Agent, Runtime, tool
    from keel.guardrails import PIIRedactor
    from keel.testing import ScriptedModel, call

    sent: list[str] = []

    @tool
    def email(to: str) -> str:
        """Send an e-mail."""
        sent.append(to)
        return f"sent to {to}; reply from bob@example.org"

    model = ScriptedModel([call("email", to="ana@example.com"), "Done: ana@example.com"])
    agent = Agent(name="desk", model=model, tools=[email])
    db = tmp_path / "keel.db"
    async with Runtime(
        store=db, settings=KeelSettings.from_environ({}), redact=PIIRedactor()
    ) as runtime:
        result = await runtime.run(agent, "Mail ana@example.com, my card is 4111 1111 1111 1111")

    assert sent == ["ana@example.com"]  # the tool got the address the model wrote
    assert result.output == "Done: [EMAIL]"
    first = [str(m.content) for m in model.requests[0].messages]
    assert "my card is [CREDIT_CARD]" in first[-1]
    told = [str(m.content) for m in model.requests[1].messages]
    assert "reply from [EMAIL]" in told[-1]
    raw = database_bytes(tmp_path)
    assert b"4111 1111" not in raw
    assert b"bob@example.org" not in raw
