"""Reading Server-Sent Events as a client does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Message", "messages"]


@dataclass(frozen=True)
class Message:
    """One SSE message: its ``id:`` (if any), ``event:`` (default ``message``) and data;
    ``comment`` for a comment line (a keep-alive)."""

    event: str = "message"
    id: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def messages(response: httpx.Response) -> Iterator[Message]:
    """The messages of a streamed response, as they arrive."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield Message(comment=line[1:].strip())
            continue
        if line == "":
            if fields:
                yield Message(
                    event=fields.get("event", "message"),
                    id=fields.get("id"),
                    data=fields.get("data", ""),
                )
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
