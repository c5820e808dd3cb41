"""Tool calls out of raw model text: pure functions, shared by every backend.

Formats understood, in this order:

- Kimi K2 sections: ``<|tool_calls_section_begin|>`` then per call
  ``<|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}<|tool_call_end|>``
  and ``<|tool_calls_section_end|>``;
- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
- fenced (```json ... ```) or bare JSON objects ``{"name": ..., "arguments": {...}}``, which
  small instruct models often write instead.

Every call is checked against its tool's JSON schema. Anything wrong (unknown tool, broken
or truncated JSON, schema violations) becomes a :class:`ToolCall` with ``error`` set — the
loop shows that to the model — never an exception. The returned content has the markup
removed; reasoning in ``<think>…</think>`` is split off.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kcode.llm.base import ToolCall, ToolSpec

__all__ = [
    "KIMI_SECTION_BEGIN",
    "KIMI_SECTION_END",
    "KIMI_CALL_BEGIN",
    "KIMI_ARGUMENT_BEGIN",
    "KIMI_CALL_END",
    "HERMES_BEGIN",
    "HERMES_END",
    "THINK_BEGIN",
    "THINK_END",
    "looks_like_call",
    "ParsedOutput",
    "parse_output",
    "split_reasoning",
    "validate_call",
]

KIMI_SECTION_BEGIN = "<|tool_calls_section_begin|>"
KIMI_SECTION_END = "<|tool_calls_section_end|>"
KIMI_CALL_BEGIN = "<|tool_call_begin|>"
KIMI_ARGUMENT_BEGIN = "<|tool_call_argument_begin|>"
KIMI_CALL_END = "<|tool_call_end|>"
HERMES_BEGIN = "<tool_call>"
HERMES_END = "</tool_call>"
THINK_BEGIN = "<think>"
THINK_END = "</think>"

_KIMI_ID = re.compile(r"^\s*(?:functions\.)?([A-Za-z0-9_\-.]+?)(?::(\d+))?\s*$")
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|tool_call)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_CALL_OBJECT_START = re.compile(r'\{\s*"(?:name|function)"\s*:')
_MAX_SCHEMA_ERRORS = 3


@dataclass
class ParsedOutput:
    content: str
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, rest). Handles a missing ``<think>`` (the template opened it) and a
    missing ``</think>`` (output cut off while thinking)."""
    start = text.find(THINK_BEGIN)
    end = text.find(THINK_END)
    if end != -1 and (start == -1 or start > end):
        return text[:end].strip(), text[end + len(THINK_END):]
    if start != -1 and text[:start].strip() == "":
        if end == -1:
            return text[start + len(THINK_BEGIN):].strip(), ""
        return text[start + len(THINK_BEGIN):end].strip(), text[end + len(THINK_END):]
    return "", text


def parse_output(text: str, tools: list[ToolSpec], *, id_prefix: str = "call") -> ParsedOutput:
    """Split raw output into reasoning, content and validated tool calls."""
    reasoning, rest = split_reasoning(text)
    for parser in (_parse_kimi, _parse_hermes, _parse_fenced, _parse_bare):
        parsed = parser(rest, tools, id_prefix)
        if parsed is not None:
            content, calls = parsed
            return ParsedOutput(content.strip(), reasoning, calls)
    return ParsedOutput(rest.strip(), reasoning, [])


def _tool_map(tools: list[ToolSpec]) -> dict[str, ToolSpec]:
    return {tool.name: tool for tool in tools}


def validate_call(call: ToolCall, tools: list[ToolSpec]) -> ToolCall:
    """Set ``call.error`` when the tool is unknown or the arguments break its schema."""
    if call.error:
        return call
    by_name = _tool_map(tools)
    if call.name not in by_name:
        known = ", ".join(sorted(by_name)) or "none"
        call.error = f"unknown tool {call.name!r} (available tools: {known})"
        call.arguments = {}
        return call
    schema = by_name[call.name].parameters
    required = set(schema.get("required", []))
    # models write `null` for an optional argument they mean to leave out
    call.arguments = {k: v for k, v in call.arguments.items() if v is not None or k in required}
    problems = _schema_errors(call.arguments, schema)
    if problems:
        call.error = f"arguments for {call.name!r} do not match its schema: " + "; ".join(problems)
    return call


def _schema_errors(arguments: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    if not schema:
        return []
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        validator = Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    except SchemaError:
        return []  # a broken tool schema is our bug, not the model's
    problems = []
    for error in errors[:_MAX_SCHEMA_ERRORS]:
        where = "/".join(str(p) for p in error.path)
        problems.append(f"{where + ': ' if where else ''}{error.message}")
    if len(errors) > _MAX_SCHEMA_ERRORS:
        problems.append(f"and {len(errors) - _MAX_SCHEMA_ERRORS} more")
    return problems


def _decode_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    stripped = raw.strip()
    if not stripped:
        return {}, "arguments are empty (expected a JSON object)"
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as error:
        return {}, f"arguments are not valid JSON ({error.msg} at position {error.pos})"
    if not isinstance(value, dict):
        return {}, "arguments must be a JSON object"
    return value, None


def _make_call(call_id: str, name: str, raw: str, tools: list[ToolSpec],
               error: str | None = None) -> ToolCall:
    if error is not None:
        return ToolCall(call_id, name, {}, raw, error)
    arguments, error = _decode_arguments(raw)
    return validate_call(ToolCall(call_id, name, arguments, raw, error), tools)


# --- Kimi K2 -------------------------------------------------------------------------------

def _parse_kimi(text: str, tools: list[ToolSpec], id_prefix: str) -> tuple[str, list[ToolCall]] | None:
    section = text.find(KIMI_SECTION_BEGIN)
    first_call = text.find(KIMI_CALL_BEGIN)
    if section == -1 and first_call == -1:
        return None
    start = section if section != -1 else first_call
    body_start = start + len(KIMI_SECTION_BEGIN) if section != -1 else start
    end = text.find(KIMI_SECTION_END, body_start)
    body = text[body_start:] if end == -1 else text[body_start:end]
    after = "" if end == -1 else text[end + len(KIMI_SECTION_END):]
    calls: list[ToolCall] = []
    pieces = body.split(KIMI_CALL_BEGIN)[1:]
    for index, piece in enumerate(pieces):
        call_id, name = f"{id_prefix}_{index}", ""
        header, has_args, rest = piece.partition(KIMI_ARGUMENT_BEGIN)
        match = _KIMI_ID.match(header)
        if match:
            name = match.group(1)
            call_id = f"functions.{name}:{match.group(2) or index}"
        if not has_args:
            calls.append(_make_call(call_id, name, piece, tools,
                                    f"tool call {header.strip()[:60]!r} has no "
                                    f"{KIMI_ARGUMENT_BEGIN} (output truncated or malformed)"))
            continue
        raw, closed, _ = rest.partition(KIMI_CALL_END)
        if not match:
            calls.append(_make_call(call_id, "", raw, tools,
                                    f"cannot read the tool name from {header.strip()[:60]!r} "
                                    "(expected functions.NAME:INDEX)"))
        elif not closed:
            calls.append(_make_call(call_id, name, raw, tools,
                                    f"tool call {name!r} was cut off before {KIMI_CALL_END}")
                         if _decode_arguments(raw)[1] else _make_call(call_id, name, raw, tools))
        else:
            calls.append(_make_call(call_id, name, raw, tools))
    if not pieces:
        calls.append(ToolCall(f"{id_prefix}_0", "", {}, body,
                              f"the tool-call section holds no {KIMI_CALL_BEGIN}"))
    return text[:start] + after, calls


# --- Hermes / Qwen -------------------------------------------------------------------------

def _call_from_object(value: Any, raw: str, call_id: str, tools: list[ToolSpec]) -> ToolCall:
    if not isinstance(value, dict):
        return ToolCall(call_id, "", {}, raw, 'a tool call must be a JSON object {"name", "arguments"}')
    if isinstance(value.get("function"), dict):  # OpenAI shape {"function": {"name", "arguments"}}
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return ToolCall(call_id, "", {}, raw, 'the tool call has no "name"')
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        return _make_call(call_id, name, arguments, tools)
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, raw, '"arguments" must be a JSON object')
    return validate_call(ToolCall(call_id, name, arguments, raw), tools)


def _calls_from_json_text(raw: str, id_prefix: str, start_index: int,
                          tools: list[ToolSpec]) -> list[ToolCall]:
    call_id = f"{id_prefix}_{start_index}"
    stripped = raw.strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as error:
        return [ToolCall(call_id, _guess_name(stripped), {}, raw,
                         f"the tool call is not valid JSON ({error.msg} at position {error.pos})")]
    values = value if isinstance(value, list) else [value]
    return [_call_from_object(item, raw, f"{id_prefix}_{start_index + i}", tools)
            for i, item in enumerate(values)]


def _guess_name(text: str) -> str:
    match = re.search(r'"name"\s*:\s*"([^"]+)"', text)
    return match.group(1) if match else ""


def _parse_hermes(text: str, tools: list[ToolSpec], id_prefix: str) -> tuple[str, list[ToolCall]] | None:
    if HERMES_BEGIN not in text:
        return None
    content_parts: list[str] = []
    calls: list[ToolCall] = []
    position = 0
    while True:
        start = text.find(HERMES_BEGIN, position)
        if start == -1:
            content_parts.append(text[position:])
            break
        content_parts.append(text[position:start])
        body_start = start + len(HERMES_BEGIN)
        end = text.find(HERMES_END, body_start)
        raw = text[body_start:] if end == -1 else text[body_start:end]
        found = _calls_from_json_text(raw, id_prefix, len(calls), tools)
        if end == -1:
            for call in found:
                if call.error and "not valid JSON" in call.error:
                    call.error = f"the tool call was cut off before {HERMES_END}: {call.error}"
        calls += found
        if end == -1:
            break
        position = end + len(HERMES_END)
    return "".join(content_parts), calls


# --- fenced and bare JSON ------------------------------------------------------------------

def looks_like_call(raw: str) -> bool:
    """Whether JSON text starts like a call object (or a list of them)."""
    stripped = raw.strip()
    return bool(_CALL_OBJECT_START.match(stripped)) or (
        stripped.startswith("[") and bool(_CALL_OBJECT_START.match(stripped[1:].lstrip())))


def _parse_fenced(text: str, tools: list[ToolSpec], id_prefix: str) -> tuple[str, list[ToolCall]] | None:
    calls: list[ToolCall] = []
    kept: list[str] = []
    position = 0
    for match in _FENCE.finditer(text):
        body = match.group(1)
        if not looks_like_call(body):
            continue
        kept.append(text[position:match.start()])
        found = _calls_from_json_text(body, id_prefix, len(calls), tools)
        if text[match.end(1):match.end()] != "```":  # the fence never closed
            for call in found:
                if call.error and "not valid JSON" in call.error:
                    call.error = f"the fenced tool call was cut off: {call.error}"
        calls += found
        position = match.end()
    if not calls:
        return None
    kept.append(text[position:])
    return "".join(kept), calls


def _parse_bare(text: str, tools: list[ToolSpec], id_prefix: str) -> tuple[str, list[ToolCall]] | None:
    """JSON call objects written straight into the text (only objects with a "name" key)."""
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    kept: list[str] = []
    position = 0
    for match in _CALL_OBJECT_START.finditer(text):
        if match.start() < position:
            continue
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError as error:
            if text[match.start():].strip().endswith("}"):
                continue  # prose containing braces, not a call
            kept.append(text[position:match.start()])
            raw = text[match.start():]
            calls.append(ToolCall(f"{id_prefix}_{len(calls)}", _guess_name(raw), {}, raw,
                                  f"the tool call is not valid JSON ({error.msg}; output cut off?)"))
            position = len(text)
            break
        if not isinstance(value, dict) or not (
            "arguments" in value or "parameters" in value or isinstance(value.get("function"), dict)
        ):
            continue
        kept.append(text[position:match.start()])
        calls.append(_call_from_object(value, text[match.start():end],
                                       f"{id_prefix}_{len(calls)}", tools))
        position = end
    if not calls:
        return None
    kept.append(text[position:])
    return "".join(kept), calls
