"""RulesModel: deterministic tool calls from rules and keywords, answers from tool results."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from keel._core.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamComplete,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from keel.errors import ConfigurationError
from keel.models._rules import Rule, RulesModel


def tool(name: str, description: str, properties: dict[str, Any], *required: str) -> ToolDefinition:
    return ToolDefinition(
        name=name,
        description=description,
        parameters={"type": "object", "properties": properties, "required": list(required)},
    )


STRING: dict[str, Any] = {"type": "string"}
LOOKUP_ORDER = tool(
    "lookup_order",
    "Look up an order by its id: status, items and delivery date.",
    {"order_id": STRING},
    "order_id",
)
SEARCH_FAQ = tool(
    "search_faq",
    "Search the help-center FAQ for policies on returns, shipping and warranty.",
    {"query": STRING},
    "query",
)
REFUND_ORDER = tool(
    "refund_order",
    "Refund all or part of an order's payment.",
    {"order_id": STRING, "amount_usd": {"type": "number"}, "reason": STRING},
    "order_id",
    "amount_usd",
    "reason",
)
CREATE_TICKET = tool(
    "create_ticket",
    "Open a support ticket for a problem that needs a human.",
    {"email": STRING, "summary": STRING},
    "email",
    "summary",
)
SUPPORT_TOOLS = (LOOKUP_ORDER, SEARCH_FAQ, REFUND_ORDER, CREATE_TICKET)


async def ask(
    text: str,
    tools: Sequence[ToolDefinition] = SUPPORT_TOOLS,
    *,
    model: RulesModel | None = None,
    output_schema: Mapping[str, Any] | None = None,
    settings: ModelSettings | None = None,
) -> ModelResponse:
    request = ModelRequest(
        messages=[SystemMessage(content="You are a support agent."), UserMessage(content=text)],
        tools=tools,
        output_schema=output_schema,
        settings=settings or ModelSettings(),
    )
    return await (model or RulesModel()).request(request)


def calls(response: ModelResponse) -> list[tuple[str, dict[str, Any]]]:
    return [(call.name, json.loads(call.arguments)) for call in response.message.tool_calls]


def answered(
    text: str, *results: tuple[str, str, bool], tools: Sequence[ToolDefinition] = SUPPORT_TOOLS
) -> list[Message]:
    """A conversation where the assistant called tools and each got a result."""
    tool_calls = tuple(
        ToolCall(id=f"rules_0_{i}", name=name, arguments="{}")
        for i, (name, _, _) in enumerate(results)
    )
    return [
        UserMessage(content=text),
        AssistantMessage(tool_calls=tool_calls),
        *(
            ToolResultMessage(tool_call_id=f"rules_0_{i}", name=name, content=body, is_error=error)
            for i, (name, body, error) in enumerate(results)
        ),
    ]


# -- identity and protocol ---------------------------------------------------------------


async def test_model_is_named_rules_and_reports_it_in_responses() -> None:
    model = RulesModel()
    response = await ask("Where is order 123?", model=model)
    assert model.name == "rules"
    assert response.model == "rules"
    assert response.provider_response_id is None


async def test_tool_call_response_finishes_with_tool_calls_and_no_text() -> None:
    response = await ask("Where is order 123?")
    assert response.finish_reason == "tool_calls"
    assert response.message.content is None


async def test_stream_ends_with_the_same_response_as_request() -> None:
    model = RulesModel()
    request = ModelRequest(
        messages=[UserMessage(content="Where is order 123?")], tools=[LOOKUP_ORDER]
    )
    events = [event async for event in model.stream(request)]
    assert events == [StreamComplete(response=await model.request(request))]


# -- keyword matching ----------------------------------------------------------------------


async def test_where_is_order_calls_lookup_order_with_the_order_id() -> None:
    assert calls(await ask("Where is order 123?")) == [("lookup_order", {"order_id": "123"})]


async def test_refund_request_calls_only_the_most_specific_tool_with_id_and_dollar_amount() -> None:
    text = "Hi, my order #4512 never arrived, can I get a refund of $30?"
    assert calls(await ask(text)) == [
        ("refund_order", {"order_id": "4512", "amount_usd": 30, "reason": text})
    ]


async def test_policy_question_searches_the_faq_with_the_message() -> None:
    text = "What is your return policy?"
    assert calls(await ask(text)) == [("search_faq", {"query": text})]


async def test_ticket_request_extracts_the_email_and_uses_the_message_as_summary() -> None:
    text = "My email is ana@example.com, please open a ticket: the app crashes"
    assert calls(await ask(text)) == [
        ("create_ticket", {"email": "ana@example.com", "summary": text})
    ]


async def test_two_intents_make_parallel_calls_each_query_getting_its_own_sentence() -> None:
    response = await ask("Where is order 123? Also, what is your return policy?")
    assert calls(response) == [
        ("lookup_order", {"order_id": "123"}),
        ("search_faq", {"query": "Also, what is your return policy?"}),
    ]
    assert [call.id for call in response.message.tool_calls] == ["rules_0_0", "rules_0_1"]


async def test_parallel_tool_calls_disabled_keeps_only_the_best_match() -> None:
    response = await ask(
        "Where is order 123? Also, what is your return policy?",
        settings=ModelSettings(parallel_tool_calls=False),
    )
    assert calls(response) == [("lookup_order", {"order_id": "123"})]


async def test_plurals_verb_endings_and_synonyms_match_tool_names() -> None:
    tools = [
        tool("track_shipment", "Track a parcel.", {"tracking_number": STRING}, "tracking_number")
    ]
    response = await ask("Can you check where my shipments are? Tracking 1Z999", tools)
    assert calls(response) == [("track_shipment", {"tracking_number": "1Z999"})]


async def test_a_word_shared_by_several_tool_names_does_not_match_on_its_own() -> None:
    response = await ask("I have a question about order 123 and my refund", [REFUND_ORDER])
    assert [name for name, _ in calls(response)] == []  # refund_order needs an amount
    assert "amount" in (response.message.content or "")


async def test_tool_without_parameters_is_called_with_empty_arguments() -> None:
    tools = [ToolDefinition(name="list_products", description="List all products.", parameters={})]
    response = await ask("Which products do you have?", tools)
    assert [(c.name, c.arguments) for c in response.message.tool_calls] == [("list_products", "{}")]


async def test_arguments_are_compact_json_in_schema_property_order() -> None:
    response = await ask("Refund $5 on order 9, it was late")
    assert response.message.tool_calls[0].arguments == (
        '{"order_id":"9","amount_usd":5,"reason":"Refund $5 on order 9, it was late"}'
    )


# -- argument extraction -------------------------------------------------------------------


async def test_missing_order_id_asks_which_order_instead_of_calling() -> None:
    response = await ask("Where is my order?")
    assert response.message.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.message.content == (
        "To look up the order, I need the order ID. Which order do you mean?"
    )


async def test_a_token_used_for_one_argument_is_never_reused_for_another() -> None:
    response = await ask("I want a refund for order 77")
    assert response.message.tool_calls == ()
    assert response.message.content == (
        "To refund the order, I need the amount (USD). Could you tell me the amount (USD)?"
    )


async def test_money_argument_prefers_the_dollar_amount_over_other_numbers() -> None:
    response = await ask("Please refund 2 items from order 555, that is $19.99 in total")
    assert calls(response)[0][1]["amount_usd"] == 19.99
    assert calls(response)[0][1]["order_id"] == "555"


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("Refund 25 dollars for order 8", 25),
        ("Refund 1,250.50 USD for order 8", 1250.5),
        ("Refund €12 for order 8", 12),
    ],
)
async def test_money_is_read_with_symbols_words_and_thousands(text: str, amount: float) -> None:
    assert calls(await ask(text, [REFUND_ORDER]))[0][1]["amount_usd"] == amount


@pytest.mark.parametrize(
    ("text", "order_id"),
    [
        ("Where is order A-1001?", "A-1001"),
        ("status of #9912 please", "9912"),
        ("order W77x", "W77x"),
    ],
)
async def test_identifier_is_any_token_with_a_digit_without_its_hash(
    text: str, order_id: str
) -> None:
    assert calls(await ask(text, [LOOKUP_ORDER])) == [("lookup_order", {"order_id": order_id})]


async def test_hash_is_kept_when_the_parameter_description_shows_ids_starting_with_it() -> None:
    schema = {"type": "string", "description": "The order id, such as '#W0000000'."}
    tools = [
        tool("get_order_details", "Get the status of an order.", {"order_id": schema}, "order_id")
    ]
    response = await ask("What's the status of order W2378156?", tools)
    assert calls(response) == [("get_order_details", {"order_id": "#W2378156"})]


async def test_identifier_goes_to_the_parameter_whose_name_precedes_it() -> None:
    tools = [
        tool(
            "move_order",
            "Move an order to another user.",
            {"user_id": STRING, "order_id": STRING},
            "user_id",
            "order_id",
        )
    ]
    response = await ask("Move order 4471 to user u-20", tools)
    assert calls(response) == [("move_order", {"user_id": "u-20", "order_id": "4471"})]


async def test_integer_identifier_is_emitted_as_a_number() -> None:
    tools = [
        tool("lookup_order", "Look up an order.", {"order_id": {"type": "integer"}}, "order_id")
    ]
    assert calls(await ask("Where is order #123?", tools)) == [("lookup_order", {"order_id": 123})]


async def test_integer_parameter_skips_decimals_and_identifiers() -> None:
    tools = [
        tool(
            "add_seats",
            "Add seats to a plan.",
            {"plan_id": STRING, "seats": {"type": "integer"}},
            "plan_id",
            "seats",
        )
    ]
    response = await ask("Add seats to plan #31: 2.5 was wrong, make it 3", tools)
    assert calls(response) == [("add_seats", {"plan_id": "31", "seats": 3})]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Cancel order 5, I no longer need it", "no longer needed"),
        ("Cancel order 5, ordered it by mistake", "ordered by mistake"),
    ],
)
async def test_enum_argument_is_the_value_mentioned_in_the_text(text: str, reason: str) -> None:
    enum = {"type": "string", "enum": ["no longer needed", "ordered by mistake"]}
    tools = [
        tool(
            "cancel_order",
            "Cancel an order.",
            {"order_id": STRING, "reason": enum},
            "order_id",
            "reason",
        )
    ]
    assert calls(await ask(text, tools)) == [("cancel_order", {"order_id": "5", "reason": reason})]


async def test_required_enum_not_mentioned_is_asked_for() -> None:
    enum = {"type": "string", "enum": ["standard", "express"]}
    tools = [
        tool(
            "ship_order", "Ship an order.", {"order_id": STRING, "speed": enum}, "order_id", "speed"
        )
    ]
    response = await ask("Ship order 5", tools)
    assert (
        response.message.content
        == "To ship the order, I need the speed. Could you tell me the speed?"
    )


async def test_optional_parameters_are_only_filled_when_found() -> None:
    properties = {
        "order_id": STRING,
        "notify_customer": {"type": "boolean"},
        "coupon_code": STRING,
        "note": STRING,
        "priority": {"type": "string", "enum": ["low", "high"]},
    }
    tools = [tool("resend_order", "Resend an order.", properties, "order_id")]
    plain = calls(await ask("Resend order 12", tools))
    assert plain == [("resend_order", {"order_id": "12"})]
    rich = calls(await ask("Resend order 12 with high priority and notify the customer", tools))
    assert rich == [
        ("resend_order", {"order_id": "12", "notify_customer": True, "priority": "high"})
    ]


async def test_required_boolean_is_false_unless_its_name_is_in_the_text() -> None:
    tools = [
        tool(
            "close_ticket",
            "Close a ticket.",
            {"ticket_id": STRING, "send_survey": {"type": "boolean"}},
            "ticket_id",
            "send_survey",
        )
    ]
    assert calls(await ask("Close ticket 8", tools))[0][1] == {
        "ticket_id": "8",
        "send_survey": False,
    }
    sent = calls(await ask("Close ticket 8 and send the survey", tools))[0][1]
    assert sent == {"ticket_id": "8", "send_survey": True}


async def test_array_of_ids_collects_every_id_named_after_its_word() -> None:
    properties = {
        "order_id": STRING,
        "item_ids": {"type": "array", "items": STRING},
        "payment_id": STRING,
    }
    tools = [tool("return_items", "Return items of an order.", properties, "order_id", "item_ids")]
    response = await ask("Return items 1151 and 2290 from order 77", tools)
    assert calls(response) == [("return_items", {"order_id": "77", "item_ids": ["1151", "2290"]})]


async def test_an_unnamed_required_id_does_not_steal_a_token_named_for_another_parameter() -> None:
    properties = {
        "order_id": STRING,
        "item_ids": {"type": "array", "items": STRING},
        "payment_id": STRING,
    }
    tools = [
        tool(
            "return_items",
            "Return items of an order.",
            properties,
            "order_id",
            "item_ids",
            "payment_id",
        )
    ]
    response = await ask("Return item 1151 from order 77", tools)
    assert response.message.content == (
        "To return the items, I need the payment ID. Which payment do you mean?"
    )


async def test_email_list_and_format_email_are_extracted() -> None:
    properties = {
        "contact": {"type": "string", "format": "email"},
        "cc_emails": {"type": "array", "items": STRING},
    }
    tools = [tool("share_report", "Share a report by email.", properties, "contact")]
    response = await ask(
        "Share the report with bo@example.org, cc ann@example.com and li@example.net", tools
    )
    assert calls(response) == [
        (
            "share_report",
            {"contact": "bo@example.org", "cc_emails": ["ann@example.com", "li@example.net"]},
        )
    ]


async def test_several_missing_arguments_are_all_named_in_one_question() -> None:
    tools = [
        tool(
            "update_address",
            "Change a shipping address.",
            {"city": STRING, "street": STRING},
            "city",
            "street",
        )
    ]
    response = await ask("Please update my address", tools)
    assert response.message.content == (
        "To update the address, I need the city and the street. "
        "Could you tell me the city and the street?"
    )


# -- no match ------------------------------------------------------------------------------


async def test_no_matching_tool_lists_what_it_can_do() -> None:
    response = await ask("blah blah")
    assert response.message.tool_calls == ()
    assert response.message.content == (
        "I can help with:\n"
        "- lookup_order: Look up an order by its id: status, items and delivery date.\n"
        "- search_faq: Search the help-center FAQ for policies on returns, shipping and warranty.\n"
        "- refund_order: Refund all or part of an order's payment.\n"
        "- create_ticket: Open a support ticket for a problem that needs a human.\n"
        "Tell me what you need, with any order numbers, email addresses or amounts."
    )


async def test_greeting_is_answered_with_hello_and_the_capabilities() -> None:
    response = await ask("Hello there")
    assert (response.message.content or "").startswith("Hello! I can help with:\n- lookup_order")


async def test_without_tools_the_message_is_acknowledged() -> None:
    response = await ask("Where is order 123?", tools=())
    assert response.message.content == (
        'I received your message: "Where is order 123?". '
        "I have no tools here, so I cannot act on it."
    )


async def test_without_any_user_message_it_offers_help() -> None:
    request = ModelRequest(messages=[SystemMessage(content="Be brief.")])
    assert (await RulesModel().request(request)).message.content == "Hello! How can I help?"


# -- explicit rules --------------------------------------------------------------------------


async def test_explicit_rule_fills_templates_and_coerces_lone_placeholders_to_the_schema_type() -> (
    None
):
    rule = Rule(
        pattern=r"refund order (?P<order_id>\d+) by (?P<amount>[\d.]+)",
        tool="refund_order",
        arguments={
            "order_id": "{order_id}",
            "amount_usd": "{amount}",
            "reason": "rule: {order_id}",
        },
    )
    response = await ask("Please REFUND ORDER 42 by 9.5 today", model=RulesModel(rules=[rule]))
    assert calls(response) == [
        ("refund_order", {"order_id": "42", "amount_usd": 9.5, "reason": "rule: 42"})
    ]


async def test_explicit_rule_with_callable_arguments_receives_the_match() -> None:
    def arguments(match: re.Match[str]) -> dict[str, Any]:
        return {"query": match.group("topic").upper()}

    rule = Rule(pattern=r"tell me about (?P<topic>\w+)", tool="search_faq", arguments=arguments)
    response = await ask("tell me about warranty", model=RulesModel(rules=[rule]))
    assert calls(response) == [("search_faq", {"query": "WARRANTY"})]


async def test_explicit_reply_rule_answers_with_its_template() -> None:
    rule = Rule(pattern=r"opening hours( on (?P<day>\w+))?", reply="We are open 9-5 {day}.")
    response = await ask("What are your opening hours on Monday?", model=RulesModel(rules=[rule]))
    assert response.message.content == "We are open 9-5 Monday."
    assert response.message.tool_calls == ()


async def test_first_matching_rule_wins_over_later_rules_and_keywords() -> None:
    rules = [
        Rule(pattern="order", tool="lookup_order", arguments={"order_id": "first"}),
        Rule(pattern="order", tool="lookup_order", arguments={"order_id": "second"}),
    ]
    response = await ask("Refund order 1 for $2", model=RulesModel(rules=rules))
    assert calls(response) == [("lookup_order", {"order_id": "first"})]


async def test_rule_naming_a_tool_the_request_does_not_offer_is_skipped() -> None:
    rules = [Rule(pattern="order", tool="escalate_order", arguments={})]
    response = await ask("Where is order 123?", model=RulesModel(rules=rules))
    assert calls(response) == [("lookup_order", {"order_id": "123"})]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pattern": "x"}, "exactly one of tool= or reply="),
        ({"pattern": "x", "tool": "t", "reply": "r"}, "exactly one of tool= or reply="),
        ({"pattern": "(", "tool": "t"}, "not a valid regular expression"),
        ({"pattern": "(?P<a>x)", "tool": "t", "arguments": {"b": "{b}"}}, "no group named 'b'"),
        ({"pattern": "(?P<a>x)", "reply": "{a.upper}"}, "no group named 'a.upper'"),
        ({"pattern": "(?P<a>x)", "reply": "{a!r}"}, "not made of plain"),
        ({"pattern": "(?P<a>x)", "reply": "{a"}, "not made of plain"),
    ],
)
def test_rule_mistakes_raise_configuration_error_at_construction(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Rule(**kwargs)


async def test_rule_arguments_that_are_not_json_raise_configuration_error() -> None:
    rule = Rule(pattern="order", tool="lookup_order", arguments=lambda m: {"order_id": object()})
    with pytest.raises(ConfigurationError, match="not JSON"):
        await ask("order 1", model=RulesModel(rules=[rule]))


def test_rule_braces_can_be_written_literally() -> None:
    rule = Rule(pattern="x", reply="{{not a field}}")
    assert rule.regex.flags & re.IGNORECASE


# -- answers after tool results --------------------------------------------------------------


async def test_tool_results_are_composed_into_a_readable_final_answer() -> None:
    order = {"order_id": "123", "status": "shipped", "items": ["mug", "tee"], "gift": False}
    messages = answered(
        "Where is order 123? Also, what is your return policy?",
        ("lookup_order", json.dumps(order), False),
        ("search_faq", "Returns are free within 30 days.", False),
    )
    response = await RulesModel().request(ModelRequest(messages=messages, tools=SUPPORT_TOOLS))
    assert response.message.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.message.content == (
        "Lookup order:\n- order_id: 123\n- status: shipped\n- items: mug, tee\n- gift: no\n\n"
        "Search faq: Returns are free within 30 days."
    )


async def test_error_results_are_reported_as_failures_with_their_message() -> None:
    messages = answered("Refund order 9 $5", ("refund_order", "payment gateway is down", True))
    response = await RulesModel().request(ModelRequest(messages=messages, tools=SUPPORT_TOOLS))
    assert response.message.content == "Refund order failed: payment gateway is down"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[]", "Search faq: no results."),
        ("{}", "Search faq: no details."),
        ('"just a string"', "Search faq: just a string"),
        ("42", "Search faq: 42"),
        ("line one\nline two", "Search faq:\nline one\nline two"),
        ("", "Search faq: (empty)"),
        ("not {json", "Search faq: not {json"),
        (
            json.dumps([{"q": i} for i in range(7)]),
            "Search faq: 7 results.\n- q: 0\n- q: 1\n- q: 2\n- q: 3\n- q: 4\n- ... and 2 more",
        ),
    ],
)
async def test_results_of_every_shape_are_rendered(body: str, expected: str) -> None:
    messages = answered("What is your return policy?", ("search_faq", body, False))
    response = await RulesModel().request(ModelRequest(messages=messages, tools=SUPPORT_TOOLS))
    assert response.message.content == expected


async def test_long_objects_and_values_are_summarised() -> None:
    big = {f"k{i}": "x" * 300 if i == 0 else {"nested": None} for i in range(25)}
    messages = answered("Where is order 1?", ("lookup_order", json.dumps(big), False))
    content = (await RulesModel().request(ModelRequest(messages=messages))).message.content or ""
    lines = content.splitlines()
    assert lines[1] == "- k0: " + "x" * 199 + "…"
    assert lines[2] == "- k1: nested: none"
    assert lines[-1] == "- ... and 5 more"


async def test_after_results_pending_questions_for_uncallable_tools_are_appended() -> None:
    text = "Where is order 123? I also want a refund"
    first = await ask(text)
    assert calls(first) == [("lookup_order", {"order_id": "123"})]
    messages = answered(text, ("lookup_order", '{"status": "delivered"}', False))
    response = await RulesModel().request(ModelRequest(messages=messages, tools=SUPPORT_TOOLS))
    assert response.message.content == (
        "Lookup order:\n- status: delivered\n\n"
        "To refund the order, I need the amount (USD). Could you tell me the amount (USD)?"
    )


async def test_tools_are_not_called_again_after_results_even_if_the_message_still_matches() -> None:
    messages = answered("Where is order 123?", ("lookup_order", "not found", True))
    response = await RulesModel().request(ModelRequest(messages=messages, tools=SUPPORT_TOOLS))
    assert response.message.tool_calls == ()


# -- structured output -------------------------------------------------------------------------


class Priority(StrEnum):
    LOW = "low"
    HIGH = "high"


class OrderStatus(StrEnum):
    PENDING = "pending"
    SHIPPED = "shipped"
    DELIVERED = "delivered"


class Customer(BaseModel):
    email: str
    order_id: str | None
    tier: Literal["standard", "gold"] = "standard"


class SupportAnswer(BaseModel):
    answer: Annotated[str, Field(max_length=500)]
    status: OrderStatus
    priority: Priority
    customer: Customer
    refund_usd: Annotated[float, Field(ge=0)]
    rating: Annotated[int, Field(ge=1, le=5)]
    tags: Annotated[list[str], Field(min_length=2)]
    kind: Literal["support"]
    escalated: bool
    note: str | None = None


async def test_final_answer_is_json_valid_for_a_schema_with_defs_enums_and_nested_objects() -> None:
    messages = answered(
        "Hi, I'm ana@example.com. Where is order 123? It's urgent, high priority",
        ("lookup_order", '{"status": "shipped", "carrier": "UPS"}', False),
    )
    request = ModelRequest(
        messages=messages, tools=SUPPORT_TOOLS, output_schema=SupportAnswer.model_json_schema()
    )
    response = await RulesModel().request(request)
    output = SupportAnswer.model_validate_json(response.message.content or "")
    assert output.status is OrderStatus.SHIPPED  # from the tool result
    assert output.priority is Priority.HIGH  # mentioned in the message
    assert output.customer == Customer(email="ana@example.com", order_id="123")
    assert output.answer == "Lookup order:\n- status: shipped\n- carrier: UPS"
    assert (output.refund_usd, output.rating, output.kind, output.escalated) == (
        0,
        1,
        "support",
        False,
    )
    assert len(output.tags) == 2
    assert output.note is None


async def test_structured_output_takes_a_dollar_amount_but_not_a_stray_number() -> None:
    class Refund(BaseModel):
        amount_usd: float
        order_id: str | None

    schema = Refund.model_json_schema()
    with_amount = await ask("Refund $12.50 on 777 please", [], output_schema=schema)
    assert Refund.model_validate_json(with_amount.message.content or "") == Refund(
        amount_usd=12.5, order_id=None
    )
    without = await ask("Refund 12 on 777 please", [], output_schema=schema)
    assert Refund.model_validate_json(without.message.content or "").amount_usd == 0


async def test_question_and_help_replies_are_json_too_when_a_schema_is_set() -> None:
    class Reply(BaseModel):
        text: str

    response = await ask("Where is my order?", output_schema=Reply.model_json_schema())
    assert Reply.model_validate_json(response.message.content or "").text == (
        "To look up the order, I need the order ID. Which order do you mean?"
    )


async def test_tool_calls_come_first_even_when_a_schema_is_set() -> None:
    response = await ask("Where is order 123?", output_schema={"type": "object"})
    assert calls(response) == [("lookup_order", {"order_id": "123"})]


ACK = (
    'I received your message: "What is your return policy?". '
    "I have no tools here, so I cannot act on it."
)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, ACK),
        ({"type": "string", "format": "date-time"}, "1970-01-01T00:00:00Z"),
        ({"type": "string", "maxLength": 10}, ACK[:9] + "…"),
        ({"type": "string", "minLength": 120}, ACK + "." * (120 - len(ACK))),
        ({"type": "integer", "minimum": 2.5, "maximum": 10}, 3),
        ({"type": "number", "exclusiveMaximum": -1}, -2),
        ({"type": ["null", "boolean"]}, False),
        ({"const": 3}, 3),
        ({"enum": ["a", "b"]}, "a"),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, [0, 0]),
        ({"allOf": [{"$ref": "#/$defs/A"}], "$defs": {"A": {"type": "integer", "default": 7}}}, 7),
        ({"$ref": "#/$defs/missing"}, ACK),
        ({"$ref": "https://example.com/remote.json"}, ACK),
        ({"type": "object", "required": ["undescribed"]}, {"undescribed": ACK}),
        ({"oneOf": [{"type": "null"}]}, None),
    ],
)
async def test_structured_output_honours_schema_keywords(
    schema: dict[str, Any], expected: object
) -> None:
    response = await ask("What is your return policy?", [], output_schema=schema)
    assert json.loads(response.message.content or "") == expected


@pytest.mark.parametrize(
    "adapter",
    [
        TypeAdapter(list[int]),
        TypeAdapter(int | None),
        TypeAdapter(str),
        TypeAdapter(tuple[int, str]),
    ],
)
async def test_structured_output_validates_against_pydantic_type_adapters(
    adapter: TypeAdapter[Any],
) -> None:
    response = await ask("What is your return policy?", [], output_schema=adapter.json_schema())
    adapter.validate_json(response.message.content or "")


async def test_recursive_schema_terminates_with_a_valid_instance() -> None:
    class Node(BaseModel):
        name: str
        children: list[Node]
        parent: Node | None

    response = await ask("hello", [], output_schema=Node.model_json_schema())
    node = Node.model_validate_json(response.message.content or "")
    assert (node.children, node.parent) == ([], None)


async def test_correction_from_the_runtime_is_answered_again_with_json_and_no_calls() -> None:
    class Reply(BaseModel):
        answer: str

    messages = [
        *answered("Where is order 123?", ("lookup_order", '{"status": "pending"}', False)),
        AssistantMessage(content="It is pending."),
        UserMessage(
            content="Your answer did not match the required output schema:\n"
            "1 validation error\nReply again with only a JSON value that satisfies the schema."
        ),
    ]
    request = ModelRequest(
        messages=messages, tools=SUPPORT_TOOLS, output_schema=Reply.model_json_schema()
    )
    response = await RulesModel().request(request)
    assert response.message.tool_calls == ()
    assert Reply.model_validate_json(response.message.content or "").answer == (
        "Lookup order:\n- status: pending"
    )


async def test_correction_without_results_answers_in_words_instead_of_calling_tools() -> None:
    correction = "Your answer did not match the required output schema:\nbad\nReply again."
    messages = [UserMessage(content="Where is order 123?"), UserMessage(content=correction)]
    request = ModelRequest(messages=messages, tools=SUPPORT_TOOLS, output_schema={"type": "string"})
    response = await RulesModel().request(request)
    assert response.message.tool_calls == ()
    assert json.loads(response.message.content or "").startswith("I can help with:")
    rule = Rule(pattern="order", reply="Orders ship in 2 days.")
    again = await RulesModel(rules=[rule]).request(request)
    assert json.loads(again.message.content or "") == "Orders ship in 2 days."


# -- determinism, ids, usage -------------------------------------------------------------------


async def test_same_request_always_gives_an_equal_response() -> None:
    request = ModelRequest(
        messages=[UserMessage(content="Where is order 123? Also, what is your return policy?")],
        tools=SUPPORT_TOOLS,
    )
    model = RulesModel()
    first = await model.request(request)
    assert await model.request(request) == first
    assert await RulesModel().request(request) == first


def test_responses_do_not_depend_on_the_hash_seed() -> None:
    script = (
        "from keel._core.messages import *\n"
        "from keel.models._rules import RulesModel\n"
        "import tests.models.test_rules as t\n"
        "for text in ['Where is order 123? Also, what is your return policy?',\n"
        "             'Hi, my order #4512 never arrived, can I get a refund of $30?', 'blah']:\n"
        "    r = RulesModel().respond(ModelRequest(messages=[UserMessage(content=text)],"
        " tools=t.SUPPORT_TOOLS))\n"
        "    print(r)\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


async def test_tool_call_ids_count_earlier_assistant_turns_so_they_stay_unique() -> None:
    messages: list[Message] = [
        *answered("Where is order 1?", ("lookup_order", "{}", False)),
        AssistantMessage(content="Order 1 is fine."),
        UserMessage(content="Where is order 2? And what is your return policy?"),
    ]
    response = await RulesModel().request(ModelRequest(messages=messages, tools=SUPPORT_TOOLS))
    assert [call.id for call in response.message.tool_calls] == ["rules_2_0", "rules_2_1"]


async def test_usage_estimates_four_characters_a_token_and_at_least_one() -> None:
    text = "Where is order 123?"  # 19 characters
    response = await RulesModel().request(
        ModelRequest(messages=[UserMessage(content=text)], tools=[LOOKUP_ORDER])
    )
    call = response.message.tool_calls[0]
    assert response.usage.requests == 1
    assert response.usage.input_tokens == 5
    assert response.usage.output_tokens == (len(call.name) + len(call.arguments) + 3) // 4
    empty = await RulesModel().request(ModelRequest(messages=[]))
    assert (empty.usage.input_tokens, empty.usage.output_tokens) >= (1, 1)


async def test_usage_counts_tool_calls_and_results_in_the_conversation() -> None:
    messages = answered("Where is order 1?", ("lookup_order", "x" * 400, False))
    response = await RulesModel().request(ModelRequest(messages=messages))
    assert response.usage.input_tokens == (len("Where is order 1?") + 12 + 2 + 400 + 3) // 4


# -- robustness on real-world schemas --------------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {"type": "object"},
        {"type": "object", "properties": {"order_id": "not a schema"}, "required": "order_id"},
        {"type": "object", "properties": {"order_id": {}}, "required": ["order_id", "ghost"]},
        {
            "type": "object",
            "properties": {
                "order": {"$ref": "#/$defs/Order"},
                "flights": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"n": STRING}},
                },
                "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
            },
            "required": ["order", "flights"],
            "$defs": {"Order": {"type": "object", "properties": {"order_id": STRING}}},
        },
    ],
)
async def test_odd_or_nested_parameter_schemas_never_crash(parameters: dict[str, Any]) -> None:
    tools = [ToolDefinition(name="lookupOrder", description="", parameters=parameters)]
    response = await ask("Where is order 123? lookup order please", tools)
    for call in response.message.tool_calls:
        assert isinstance(json.loads(call.arguments), dict)
    assert response.message.tool_calls or response.message.content


async def test_camel_case_tool_names_and_missing_descriptions_are_matched() -> None:
    tools = [
        ToolDefinition(
            name="cancelSubscription",
            description="",
            parameters={
                "type": "object",
                "properties": {"subscription_id": STRING},
                "required": ["subscription_id"],
            },
        )
    ]
    response = await ask("Please cancel my subscription S-88", tools)
    assert calls(response) == [("cancelSubscription", {"subscription_id": "S-88"})]


# -- more argument and schema shapes ---------------------------------------------------------


async def test_missing_email_and_single_word_tools_get_plain_questions() -> None:
    response = await ask("Please open a ticket, the app crashes")
    assert response.message.content == (
        "To create the ticket, I need the email address. Could you tell me the email address?"
    )
    calculate = tool("calculate", "Calculate an expression.", {"expression": STRING}, "expression")
    response = await ask("Calculate it for me", [calculate])
    assert response.message.content == (
        "To calculate, I need the expression. Could you tell me the expression?"
    )


async def test_const_numeric_enum_and_enum_array_parameters_are_filled() -> None:
    properties = {
        "version": {"const": 2},
        "size": {"type": "integer", "enum": [6, 8, 10]},
        "colors": {"type": "array", "items": {"type": "string", "enum": ["red", "navy", "grey"]}},
        "quantity": {"type": "integer"},
    }
    tools = [tool("order_shirt", "Order a shirt.", properties, "version", "size", "colors")]
    response = await ask("Order shirt #12 in size 8, navy and red, quantity 3", tools)
    assert calls(response) == [
        ("order_shirt", {"version": 2, "size": 8, "colors": ["red", "navy"], "quantity": 3})
    ]


async def test_rule_templates_fill_nested_values_and_coerce_booleans() -> None:
    properties = {
        "order_id": {"type": "integer"},
        "express": {"type": "boolean"},
        "meta": {"type": "object"},
    }
    tools = [tool("ship", "Ship an order.", properties)]
    rules = [
        Rule(pattern="never", tool="ship", arguments={}),
        Rule(
            pattern=r"ship (?P<id>\w+) express=(?P<fast>\w+)",
            tool="ship",
            arguments={
                "order_id": "{id}",
                "express": "{fast}",
                "meta": {"tags": ["{id}", 1], "raw": "{fast}"},
            },
        ),
    ]
    numeric = await ask("ship 12 express=yes", tools, model=RulesModel(rules=rules))
    assert calls(numeric) == [
        ("ship", {"order_id": 12, "express": True, "meta": {"tags": ["12", 1], "raw": "yes"}})
    ]
    # a value that does not fit the schema is passed on as text; the runtime validates it
    wordy = await ask("ship abc express=maybe", tools, model=RulesModel(rules=rules))
    assert calls(wordy)[0][1]["order_id"] == "abc"
    assert calls(wordy)[0][1]["express"] == "maybe"


async def test_structured_output_skips_error_and_non_object_results_and_checks_fact_types() -> None:
    class Summary(BaseModel):
        answer: str
        count: int
        ratio: float
        ok: bool
        status: OrderStatus
        email: str | None = None

    messages = answered(
        "Where is order 5? ana@example.com, it says delivered",
        ("lookup_order", '{"count": "three", "ratio": 0.5, "ok": true, "status": "lost"}', False),
        ("lookup_order", '{"count": 9}', True),
        ("search_faq", "[1, 2]", False),
    )
    request = ModelRequest(messages=messages, output_schema=Summary.model_json_schema())
    output = Summary.model_validate_json(
        (await RulesModel().request(request)).message.content or ""
    )
    assert (output.count, output.ratio, output.ok) == (0, 0.5, True)
    assert output.status is OrderStatus.DELIVERED  # "lost" is no member; the message says it
    assert output.email == "ana@example.com"  # optional, filled because it was found


async def test_self_referencing_required_schema_ends_at_a_depth_limit() -> None:
    schema = {
        "$ref": "#/$defs/Link",
        "$defs": {"Link": {"properties": {"next": {"$ref": "#/$defs/Link"}}, "required": ["next"]}},
    }
    response = await ask("hello", [], output_schema=schema)
    depth, node = 0, json.loads(response.message.content or "")
    while isinstance(node, dict):
        depth, node = depth + 1, node["next"]
    assert node is None
    assert 10 < depth < 50


async def test_many_different_tool_sets_are_all_matched_correctly() -> None:
    model = RulesModel()
    for i in range(80):
        tools = [tool(f"lookup_order_v{i}", "Look up an order.", {"order_id": STRING}, "order_id")]
        response = await ask("Where is order 7?", tools, model=model)
        assert calls(response) == [(f"lookup_order_v{i}", {"order_id": "7"})]


async def test_lists_of_objects_inside_a_result_are_counted_and_named() -> None:
    order = {
        "items": [{"name": "Headphones", "price": 342.81}, {"item_id": "77", "price": 5}],
        "fulfillments": [{"tracking": ["8430"], "carrier": {"code": "UPS"}}],
        "notes": list(range(8)),
    }
    messages = answered("Where is order 1?", ("lookup_order", json.dumps(order), False))
    response = await RulesModel().request(ModelRequest(messages=messages))
    assert response.message.content == (
        "Lookup order:\n"
        "- items: 2 items: Headphones; 77\n"
        "- fulfillments: 1 item: (tracking: 8430, carrier: (code: UPS))\n"
        "- notes: 0, 1, 2, 3, 4 and 3 more"
    )
