"""The OpenAI-compatible endpoint: any OpenAI client talks to Keel's agents.

::

    app.include_router(openai_router(runtime, caller=authenticated))

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="...")
    answer = client.chat.completions.create(
        model="support",                       # an agent's name
        messages=[{"role": "user", "content": "Where is order 123?"}],
        extra_body={"thread": "customer-42"},  # optional: the conversation to continue
    )

``POST /v1/chat/completions`` runs the agent that ``model`` names on the last user message
(streamed or not), ``GET /v1/models`` lists the agents. See docs/guide/openai-endpoint.md and
docs/decisions/0029-openai-compatible-endpoint.md for what is honoured and what is refused.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, which
# name dependencies local to openai_router, when they are defined.
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from starlette.responses import Response

from keel._agent import Agent
from keel._runtime.runtime import Runtime
from keel.server._openai_caller import Caller, anonymous
from keel.server._openai_completions import Ask, Completions
from keel.server._openai_conversation import read_conversation
from keel.server._openai_errors import OpenAIError, OpenAIRoute
from keel.server._openai_models import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    ModelList,
    ModelObject,
)
from keel.server._openai_params import refuse_unsupported
from keel.server._openai_threads import client_thread, keel_thread

__all__ = ["openai_router"]

_NAMES_SHOWN = 20
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": why}
    for status, why in {
        400: "The request is malformed or asks for what an agent cannot do; `param` names it.",
        404: "No agent has that name.",
        409: "The run waits for a person or was paused, or the thread is busy.",
        422: "A check refused the run.",
        429: "The run was paused because its model was rate limited.",
        502: "The run failed (its model or a tool).",
        503: "The agent's model is not configured, or the store is unavailable.",
    }.items()
}


def openai_router(
    runtime: Runtime,
    *,
    caller: Callable[..., Any] | None = None,
    agents: Mapping[str, Agent[Any]] | None = None,
) -> APIRouter:
    """The OpenAI-compatible endpoint as a FastAPI router, to include without a prefix: its
    paths are ``/v1/chat/completions``, ``/v1/models`` and ``/v1/models/{model}``.

    Args:
        runtime: Runs the agents and keeps their journals.
        caller: A FastAPI dependency that authenticates a request and returns a
            :class:`Caller` (tenant, user, roles), or raises ``HTTPException`` (401...); its
            tenant, user and roles go with every run. ``None``: nobody is authenticated and
            runs are for no tenant or user.
        agents: The agents served, by the name a request gives as ``model``; default: the
            runtime's agents (``runtime.agents``) at the time of each request.

    Errors are OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``), so
    OpenAI clients raise their usual exceptions.
    """
    router = APIRouter(route_class=OpenAIRoute, tags=["OpenAI-compatible"])
    completions = Completions(runtime)
    listed_since = int(runtime.clock.now())
    authenticated = caller or anonymous

    def served() -> Mapping[str, Agent[Any]]:
        return runtime.agents if agents is None else agents

    def named(model: str, param: str | None) -> Agent[Any]:
        found = served().get(model)
        if found is not None:
            return found
        names = sorted(served())
        listed = ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
        raise OpenAIError(
            404,
            f"The model '{model}' does not exist: models are this server's agents"
            + (f" ({listed})." if names else ", and it serves none."),
            param=param,
            code="model_not_found",
        )

    def model_object(name: str) -> ModelObject:
        return ModelObject(id=name, created=listed_since)

    @router.get("/v1/models", response_model=ModelList)
    async def list_models(_: Annotated[Caller, Depends(authenticated)]) -> ModelList:
        """The agents, as models: a request's ``model`` is an agent's name."""
        return ModelList(data=[model_object(name) for name in sorted(served())])

    @router.get("/v1/models/{model}", response_model=ModelObject, responses={404: _ERRORS[404]})
    async def retrieve_model(
        model: str, _: Annotated[Caller, Depends(authenticated)]
    ) -> ModelObject:
        """One agent, as a model."""
        named(model, param=None)
        return model_object(model)

    @router.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses={
            **_ERRORS,
            200: {
                "description": "The agent's answer; with `stream: true`, server-sent events "
                "of `chat.completion.chunk` objects ending with `data: [DONE]`.",
                "content": {"text/event-stream": {}},
            },
        },
    )
    async def create_chat_completion(
        request: ChatCompletionRequest,
        who: Annotated[Caller, Depends(authenticated)],
        x_keel_thread: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Run the agent that ``model`` names on the last user message and answer with its
        output: inline, or streamed as server-sent events with ``stream: true``."""
        refuse_unsupported(request)
        conversation = read_conversation(request.messages)
        thread = client_thread(request.thread, x_keel_thread)
        ask = Ask(
            agent=named(request.model, param="model"),
            model=request.model,
            input=conversation.run_input(threaded=thread is not None),
            thread=thread,
            keel_thread=None if thread is None else keel_thread(thread, who),
            caller=who,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
        )
        if request.stream:
            return await completions.stream(ask)
        return await completions.answer(ask)

    return router
