"""An offline, deterministic, rule-based model: real tool calls from keywords and patterns.

:class:`RulesModel` needs nothing installed or configured and does no I/O. It serves the example
agent, tests, demos without an API key, and as the last model of a ``Fallback`` chain. The same
request always gets the same response. What it does, in order:

1. **It reads the last user message.** Messages after it are the current turn. If the last user
   message is the runtime's correction ("Your answer did not match the required output
   schema..."), the message before it is the one answered, and the answer is given again as JSON.
2. **If the turn already holds tool results, it answers.** The final answer is composed from
   every result after the user message, one paragraph per call: a JSON object becomes
   ``- key: value`` lines (at most 20, values cut at 200 characters, lists of objects counted
   and named by their ``name``, ``title`` or ``id``), a list its count and first five items,
   text stays as it is, and a result with ``is_error`` is reported as "<Tool> failed:
   <message>". Tools are never called again in the same turn, so there is no loop. Questions
   for matched tools that could not be called (rule 5) are appended.
3. **Explicit rules come first.** Each :class:`Rule` regex is searched in the user message, case
   insensitively, in order; the first match wins. A rule for a tool the request does not offer
   is skipped. Its ``arguments`` templates (``"{order_id}"``) are filled from the named groups;
   a value that is exactly one placeholder becomes a number or boolean if the tool's schema
   says so. A rule with ``reply`` answers with that text instead.
4. **Otherwise tools are matched by keywords.** The message and each tool's name and the first
   sentence of its description become *terms*: lower-cased words, stop words dropped, crudely
   stemmed (``orders``/``order``, ``shipped``/``ship``) and merged with a few synonyms
   (``where``, ``track``, ``status``, ``check``, ``find``, ``details`` -> ``lookup``; ``open``,
   ``new``, ``raise``, ``submit`` -> ``create``; ``issue``, ``problem``, ``complaint`` ->
   ``ticket``; ``question``, ``policy`` -> ``faq``; ``change``, ``update``,
   ``edit`` -> ``modify``; ``arrive``, ``delivery`` -> ``deliver``; ``agent`` -> ``human``...).
   A tool **matches** when every term of its name is in the message ("Where is order 123?"
   matches ``lookup_order``), or when its score reaches 2: each message term in its name
   scores 2 divided by the number of tool names holding it, each other shared term 1 divided
   by the number of tools mentioning it (so one distinctive name word is enough, and ``order``,
   shared by ``lookup_order`` and ``refund_order``, is not). The most specific tool wins: a
   tool whose matched name terms are a strict part of another matched tool's drops out
   ("refund order 4512" calls ``refund_order``, not also ``lookup_order``). Every remaining
   tool is called, best score first, ties in the request's tool order: several make parallel
   calls, or only the first when ``ModelSettings.parallel_tool_calls`` is ``False``.
5. **Arguments come from the message, by each parameter's schema and name.** ``const`` -> its
   value. ``enum`` -> the value mentioned earliest (by word stems, then by content words only:
   "I ordered it by mistake" gives "ordered by mistake"). ``email`` in the name or
   ``format: email`` -> an email address. An identifier name (``*_id``, ``id``, ``number``,
   ``code``, ``sku``, ``zip``, ``phone``...) -> a token with a digit in it (``123``, ``#123``
   -> ``123``, ``A-1001``), preferring one within three words after the thing it names
   ("order #123", "item 77"); named ids are claimed first, an optional id is taken only that
   way, and a ``#`` is kept when the parameter's description shows ids starting with ``#``.
   A number -> for money names (``amount``, ``price``, ``total``, ``cost``, ``*_usd``...) a
   ``$``/``€``/``USD``/``dollars`` amount first; else one written after the parameter's name
   ("quantity 3"), else the first (integers skip decimals). A boolean -> true if all its name's
   words are in the text, else false when required. A free-text name (``query``, ``question``,
   ``text``, ``summary``, ``reason``, ``message``...) -> the message; for ``query``,
   ``question`` and ``search`` only the sentence that best matches the tool. An array of ids,
   emails or enum values -> every one found. Other parameters (names, addresses, dates,
   objects) are never guessed. No token serves two parameters of one call. Optional
   parameters appear only when found, and free text never counts as found for them. A matched
   tool whose required argument is missing is not called: the reply asks for exactly that.
6. **No tool matches**: the reply lists what it can do (each tool and the first sentence of its
   description). With no tools at all it acknowledges the message.
7. **Structured output**: with ``output_schema`` set, every text answer is JSON built from the
   schema: required properties, plus optional ones with a value found. A property named like a
   key of a JSON tool result takes that value if its type fits; an enum takes the value
   mentioned in the answer or the message, else its first; ids (named in the message), emails
   and marked amounts are extracted as in rule 5; a nullable property with nothing found is
   ``null``; other strings get the answer text, numbers 0, booleans false, arrays
   ``minItems`` items. ``$ref``/``$defs``, ``anyOf``/``oneOf`` with ``null``, ``allOf``,
   ``const``, ``default``, string formats, lengths and ranges are honoured.

Usage is estimated at four characters a token (at least 1 each way). Tool call ids are
``rules_<n>_<i>``, where ``n`` counts the assistant messages already in the request, so they
are unique within a conversation and the same on every replay.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from keel._core.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from keel._core.state import CORRECTION_PREFIX
from keel._core.usage import Usage
from keel.errors import ConfigurationError
from keel.models._rules_reply import (
    acknowledge,
    capabilities,
    first_sentence,
    loads,
    question,
    render_result,
)
from keel.models._rules_schema import MISSING, Schema, build_instance, resolve, schema_type
from keel.models._rules_text import (
    Analysis,
    Extractor,
    ParamKind,
    name_words,
    terms,
)
from keel.ports import Model

__all__ = ["Rule", "RulesModel"]

#: How the runtime's correction starts when a final answer failed the output schema.
#: The lowest score at which a tool counts as matched (one distinctive name word).
MATCH_THRESHOLD: Final = 2.0

_FORMATTER: Final = string.Formatter()
# Arguments of the same kind are filled in this order, so ids claim their tokens before
# amounts look for numbers, and arrays of ids take only what is left.
_FILL_ORDER: Final[dict[ParamKind, int]] = {
    "const": 0,
    "enum": 1,
    "email": 2,
    "id": 3,
    "money": 4,
    "number": 5,
    "array": 6,
    "boolean": 7,
    "text": 8,
    "other": 9,
}
_INDEX_CACHE_SIZE = 64

ArgumentsFactory = Callable[[re.Match[str]], Mapping[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """An explicit rule: when ``pattern`` is found in the user's message, call ``tool``.

    ``pattern`` is a regular expression searched case-insensitively. ``arguments`` is either a
    mapping whose string values are templates filled from the match's named groups
    (``{"order_id": "{order_id}"}``), or a function of the match returning the arguments.
    Give ``reply`` instead of ``tool`` to answer with text (it is a template too). Raises
    :class:`ConfigurationError` for a bad pattern or a template naming an unknown group;
    ``regex`` is the compiled pattern.
    """

    pattern: str
    tool: str | None = None
    arguments: Mapping[str, Any] | ArgumentsFactory | None = None
    reply: str | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.tool is None) == (self.reply is None):
            raise ConfigurationError(
                f"Rule(pattern={self.pattern!r}) needs exactly one of tool= or reply=; "
                "give tool= to call a tool, or reply= to answer with text"
            )
        try:
            regex = re.compile(self.pattern, re.IGNORECASE)
        except re.error as exc:
            raise ConfigurationError(
                f"Rule pattern {self.pattern!r} is not a valid regular expression: {exc}"
            ) from exc
        object.__setattr__(self, "regex", regex)
        templates: list[str] = [self.reply] if self.reply is not None else []
        if isinstance(self.arguments, Mapping):
            templates.extend(_strings(self.arguments))
        for template in templates:
            for name in _placeholders(template, self.pattern):
                if name not in regex.groupindex:
                    raise ConfigurationError(
                        f"Rule(pattern={self.pattern!r}) uses '{{{name}}}' but the pattern has "
                        f"no group named '{name}'; add (?P<{name}>...) to the pattern or "
                        "double the braces to write them literally"
                    )


class RulesModel(Model):
    """A deterministic, offline model that calls tools by rules and keywords; see the module doc.

    ``rules`` are tried first, in order; keyword matching against the request's tools follows.
    """

    def __init__(self, *, rules: Iterable[Rule] = ()) -> None:
        self._rules = tuple(rules)
        # Tool terms only depend on names and descriptions; agents send the same tools each step.
        self._index_cache: dict[tuple[tuple[str, str], ...], _ToolIndex] = {}

    @property
    def name(self) -> str:
        """Always ``"rules"``."""
        return "rules"

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Answer ``request`` by the rules; the same request always gets the same response."""
        return self.respond(request)

    def respond(self, request: ModelRequest) -> ModelResponse:
        """The synchronous core of :meth:`request`, for callers outside an event loop."""
        turn = _Turn.read(request.messages)
        tools = {tool.name: tool for tool in request.tools}
        calls: list[ToolCall] = []
        if turn.results or turn.correction:
            text = self._final_answer(turn, request)
        else:
            text = None
            planned = self._explicit(turn.text, tools)
            if planned is None:
                plan = self._plan(turn.analysis, request)
                planned = plan.calls or plan.reply
            if isinstance(planned, str):
                text = planned
            else:
                if request.settings.parallel_tool_calls is False:
                    planned = planned[:1]
                calls = [
                    ToolCall(id=f"rules_{turn.assistant_turns}_{i}", name=name, arguments=args)
                    for i, (name, args) in enumerate(planned)
                ]
        if text is not None and request.output_schema is not None:
            text = self._structured(text, turn, request.output_schema)
        out_chars = len(text or "") + sum(len(c.name) + len(c.arguments) for c in calls)
        return ModelResponse(
            message=AssistantMessage(content=text, tool_calls=tuple(calls)),
            usage=Usage(
                requests=1,
                input_tokens=max(1, (turn.chars + 3) // 4),
                output_tokens=max(1, (out_chars + 3) // 4),
            ),
            model="rules",
            finish_reason="tool_calls" if calls else "stop",
        )

    # -- explicit rules -------------------------------------------------------------------

    def _explicit(
        self, text: str, tools: Mapping[str, ToolDefinition]
    ) -> str | list[tuple[str, str]] | None:
        for rule in self._rules:
            if rule.tool is not None and rule.tool not in tools:
                continue
            match = rule.regex.search(text)
            if match is None:
                continue
            groups = {key: value or "" for key, value in match.groupdict().items()}
            if rule.reply is not None:
                return rule.reply.format_map(groups)
            assert rule.tool is not None  # guaranteed by Rule.__post_init__
            if callable(rule.arguments):
                arguments = dict(rule.arguments(match))
            else:
                schema = tools[rule.tool].parameters
                arguments = {
                    key: _fill(value, groups, _property(schema, key))
                    for key, value in (rule.arguments or {}).items()
                }
            try:
                encoded = _dumps(arguments)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"Rule(pattern={rule.pattern!r}) produced arguments that are not JSON: {exc}"
                ) from exc
            return [(rule.tool, encoded)]
        return None

    # -- keyword matching -----------------------------------------------------------------

    def _plan(self, analysis: Analysis, request: ModelRequest) -> _Plan:
        if not request.tools:
            return _Plan(calls=[], questions=[], reply=acknowledge(analysis.text))
        matched = self._index(request.tools).match(analysis.terms)
        calls: list[tuple[str, str]] = []
        questions: list[tuple[str, str]] = []
        for entry in matched:
            arguments, missing = _arguments(entry.tool, analysis, entry.terms)
            if missing:
                questions.append((entry.tool.name, question(entry.tool, missing)))
            else:
                calls.append((entry.tool.name, _dumps(arguments)))
        if calls or questions:
            return _Plan(calls=calls, questions=questions, reply=" ".join(q for _, q in questions))
        return _Plan(calls=[], questions=[], reply=capabilities(analysis, request.tools))

    def _index(self, tools: Sequence[ToolDefinition]) -> _ToolIndex:
        key = tuple((tool.name, tool.description or "") for tool in tools)
        cached = self._index_cache.get(key)
        if cached is None:
            if len(self._index_cache) >= _INDEX_CACHE_SIZE:
                self._index_cache.clear()
            cached = self._index_cache[key] = _ToolIndex.build(tools)
        return cached

    # -- answers --------------------------------------------------------------------------

    def _final_answer(self, turn: _Turn, request: ModelRequest) -> str:
        if not turn.results:  # a correction: answer now, in words, rather than call tools
            explicit = self._explicit(turn.text, {tool.name: tool for tool in request.tools})
            if isinstance(explicit, str):
                return explicit
        plan = self._plan(turn.analysis, request)
        if not turn.results:
            return plan.reply if not plan.calls else capabilities(turn.analysis, request.tools)
        answered = {result.name for result in turn.results}
        pending = [question for tool, question in plan.questions if tool not in answered]
        return "\n\n".join([*(render_result(r) for r in turn.results), *pending])

    def _structured(self, text: str, turn: _Turn, schema: Schema) -> str:
        facts: dict[str, Any] = {}
        for result in turn.results:
            if not result.is_error:
                parsed = loads(result.content)
                if isinstance(parsed, dict):
                    facts.update(parsed)
        from_user = Extractor(turn.analysis, strict=True)
        from_answer = Extractor(Analysis(text), strict=True)

        def lookup(name: str, node: Schema) -> Any:
            if name in facts and _fits(facts[name], node):
                return facts[name]
            kind = Extractor.kind(name, node)
            if kind == "enum":
                found = from_answer.extract(name, node, schema, required=False)
                if found is MISSING:
                    found = from_user.extract(name, node, schema, required=False)
                return found
            if kind in ("email", "id", "money"):
                return from_user.extract(name, node, schema, required=False)
            return MISSING

        return json.dumps(build_instance(schema, text=text, lookup=lookup), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class _Turn:
    """The part of a conversation the rules look at, read in one backward pass."""

    text: str
    analysis: Analysis
    results: list[ToolResultMessage]
    correction: bool
    assistant_turns: int
    chars: int

    @classmethod
    def read(cls, messages: Sequence[Message]) -> _Turn:
        chars = assistant_turns = 0
        last_user = answered = -1
        for i in range(len(messages) - 1, -1, -1):
            message = messages[i]
            chars += len(message.content or "")
            if isinstance(message, AssistantMessage):
                assistant_turns += 1
                chars += sum(len(c.name) + len(c.arguments) for c in message.tool_calls)
            elif isinstance(message, UserMessage):
                if last_user < 0:
                    last_user = i
                if answered < 0 and not message.content.startswith(CORRECTION_PREFIX):
                    answered = i
        results = [m for m in messages[answered + 1 :] if isinstance(m, ToolResultMessage)]
        text = messages[answered].content or "" if answered >= 0 else ""
        return cls(
            text=text,
            analysis=Analysis(text),
            results=results,
            correction=last_user >= 0 and last_user != answered,
            assistant_turns=assistant_turns,
            chars=chars,
        )


@dataclass(frozen=True, slots=True)
class _Plan:
    """What keyword matching decided: calls to make, and questions about tools it could not call."""

    calls: list[tuple[str, str]]  # (tool name, JSON arguments)
    questions: list[tuple[str, str]]  # (tool name, question)
    reply: str  # the text answer when there are no calls


@dataclass(frozen=True, slots=True)
class _Entry:
    tool: ToolDefinition
    name_terms: frozenset[str]
    terms: frozenset[str]  # name terms and the first sentence's terms


@dataclass(frozen=True, slots=True)
class _ToolIndex:
    """The terms of a set of tools, and how many tools share each (rule 4 of the module doc)."""

    entries: list[_Entry]
    name_counts: dict[str, int]  # how many tool names hold each term
    counts: dict[str, int]  # how many tools hold each term, in the name or description

    @classmethod
    def build(cls, tools: Sequence[ToolDefinition]) -> _ToolIndex:
        entries = []
        name_counts: dict[str, int] = {}
        counts: dict[str, int] = {}
        for tool in tools:
            name_terms = terms(" ".join(name_words(tool.name)))
            all_terms = name_terms | terms(first_sentence(tool.description or ""))
            entries.append(_Entry(tool, name_terms, all_terms))
            for found in name_terms:
                name_counts[found] = name_counts.get(found, 0) + 1
            for found in all_terms:
                counts[found] = counts.get(found, 0) + 1
        return cls(entries, name_counts, counts)

    def match(self, message: frozenset[str]) -> list[_Entry]:
        """The tools that match a message's terms: best score first, ties in tool order."""
        found: list[tuple[float, int, frozenset[str]]] = []
        for position, entry in enumerate(self.entries):
            hits = message & entry.terms
            in_name = hits & entry.name_terms
            # fsum: exact whatever the (hash-seeded) set order, so a tie is a tie on every run
            score = math.fsum(
                [2.0 / self.name_counts[t] for t in in_name]
                + [1.0 / self.counts[t] for t in hits - in_name]
            )
            whole_name = bool(entry.name_terms) and entry.name_terms <= message
            if whole_name or score >= MATCH_THRESHOLD - 1e-9:
                found.append((-score, position, in_name))
        # The most specific tool wins: "refund order 4512" is about refund_order, and
        # lookup_order, whose matched name words are only part of refund_order's, drops out.
        kept = [
            (score, position)
            for score, position, in_name in found
            if not (in_name and any(in_name < other for _, _, other in found))
        ]
        return [self.entries[position] for _, position in sorted(kept)]


def _arguments(
    tool: ToolDefinition, analysis: Analysis, context: frozenset[str]
) -> tuple[dict[str, Any], list[str]]:
    """The arguments found for ``tool``, and the names of required ones that were not."""
    root: Schema = tool.parameters if isinstance(tool.parameters, Mapping) else {}
    properties = root.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = _required(root)
    resolved = {key: resolve(sub, root) for key, sub in properties.items()}
    extractor = Extractor(analysis, context=context)
    kinds = {key: Extractor.kind(key, schema) for key, schema in resolved.items()}
    order = sorted(resolved, key=lambda key: _FILL_ORDER[kinds[key]])
    found: dict[str, Any] = {}
    # Identifiers written after their name ("order 4512", "item 77") are claimed first, so a
    # parameter that is not named in the message cannot take another one's token.
    for first_pass in (True, False):
        for key in order:
            is_required = key in required
            if key in found or (first_pass and kinds[key] not in ("id", "array")):
                continue
            if not is_required and kinds[key] == "text":
                continue  # the whole message is no evidence for an optional note
            value = extractor.extract(
                key,
                resolved[key],
                root,
                required=is_required,
                near_only=first_pass or not is_required,
            )
            if value is not MISSING:
                found[key] = value
    missing = [key for key in required if key not in found]
    return {key: found[key] for key in properties if key in found}, missing


def _fill(value: Any, groups: Mapping[str, str], schema: Schema) -> Any:
    """A rule's argument template filled from the match; a lone placeholder keeps its type."""
    if isinstance(value, Mapping):
        return {key: _fill(item, groups, {}) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(item, groups, {}) for item in value]
    if not isinstance(value, str):
        return value
    filled = value.format_map(groups)
    lone = re.fullmatch(r"\{(\w+)\}", value) is not None
    kind = schema_type(schema)
    if lone and kind in ("integer", "number"):
        try:
            number = float(filled.replace(",", ""))
        except ValueError:
            return filled  # the runtime's validation reports it to the model
        return int(number) if kind == "integer" or number.is_integer() else number
    if lone and kind == "boolean" and filled.lower() in ("true", "false", "yes", "no"):
        return filled.lower() in ("true", "yes")
    return filled


def _property(parameters: Mapping[str, Any], key: str) -> Schema:
    properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
    sub = properties.get(key) if isinstance(properties, Mapping) else None
    return resolve(sub, parameters) if sub is not None else {}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _placeholders(template: str, pattern: str) -> list[str]:
    """The group names a template uses; only plain ``{name}`` fields are allowed."""
    problem = (
        f"Rule(pattern={pattern!r}) has a template {template!r} that is not made of plain "
        "'{group}' fields; write literal braces as '{{' and '}}'"
    )
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in _FORMATTER.parse(template)]
    except ValueError as exc:
        raise ConfigurationError(f"{problem} ({exc})") from exc
    if any(spec or conversion for name, spec, conversion in fields if name is not None):
        raise ConfigurationError(problem)
    return [name for name, _, _ in fields if name is not None]


def _required(schema: Schema) -> list[str]:
    required = schema.get("required")
    if not isinstance(required, list | tuple):
        return []
    return [key for key in required if isinstance(key, str)]


def _fits(value: Any, node: Schema) -> bool:
    enum = node.get("enum")
    if isinstance(enum, list):
        return value in enum
    kind = schema_type(node)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return False


def _dumps(arguments: Mapping[str, Any]) -> str:
    return json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
