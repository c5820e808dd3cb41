"""GBNF grammars for constrained tool calls (``--constrain-tools``).

Generation runs free until the tool-call opener appears; the rest of the step is then
sampled under a grammar for the envelope (Kimi's section markers or Hermes' ``<tool_call>``
tags) plus each tool's JSON schema. The grammar starts *after* the opener.

The schemas go through llama-cpp-python's JSON-schema→GBNF port with a tighter string
character rule: the port's ``char`` admits raw control characters (invalid JSON), and since
grammars match tokens by text, also Kimi's CONTROL marker tokens inside strings.
"""

from __future__ import annotations

import re

from kcode.llm.base import ToolSpec

__all__ = ["STRICT_CHAR_RULE", "STRICT_STRING_RULE", "tool_call_grammar", "schema_rules"]

# A JSON string character: no raw control characters (U+0000-U+001F), and no "<|" — the
# grammar matches tokens by their text, so without that a CONTROL token such as
# <|tool_call_end|> could be sampled *inside* a string. A run of "<" must be followed by
# another character; STRICT_STRING_RULE lets a string end in "<". (A "<x" pair counts as one
# character against a schema's maxLength, which makes that bound approximate.)
STRICT_CHAR_RULE = (
    r'[^"\\\x00-\x1F<] | kcode-escape | "<"+ ([^|"\\\x00-\x1F<] | kcode-escape)'
)
ESCAPE_RULE = r'"\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
STRICT_STRING_RULE = r'"\"" char* "<"* "\"" space'
_RULE_NAME = re.compile(r"[^a-zA-Z0-9-]+")


def _literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def schema_rules(tools: list[ToolSpec]) -> tuple[dict[str, str], dict[str, str]]:
    """(GBNF rules, tool name → rule name of its arguments object)."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    names: dict[str, str] = {}
    for tool in tools:
        schema = converter.resolve_refs(tool.parameters or {"type": "object"}, tool.name)
        rule_base = "args-" + _RULE_NAME.sub("-", tool.name).strip("-")
        names[tool.name] = converter.visit(schema, rule_base)
    rules = dict(converter._rules)
    if "char" in rules:  # the port's rule lets raw control characters into strings
        rules["char"] = STRICT_CHAR_RULE
        rules["kcode-escape"] = ESCAPE_RULE
    if "string" in rules:
        rules["string"] = STRICT_STRING_RULE
    return rules, names


def tool_call_grammar(tools: list[ToolSpec], opener: str, *, include_opener: bool = False, single: bool = False) -> str:
    """A GBNF grammar for what follows ``opener`` (a Kimi or Hermes tool-call opener), or for
    the opener and what follows (``include_opener``: a step that must call a tool).
    ``single``: exactly one call (a step that must call a tool: under the grammar from its
    first token, a small model otherwise chains the same few calls until the output cap)."""
    from kcode.llm.toolcall_parse import (
        HERMES_BEGIN,
        HERMES_END,
        KIMI_ARGUMENT_BEGIN,
        KIMI_CALL_BEGIN,
        KIMI_CALL_END,
        KIMI_SECTION_BEGIN,
        KIMI_SECTION_END,
    )

    rules, names = schema_rules(tools)
    if opener in (KIMI_SECTION_BEGIN, KIMI_CALL_BEGIN):
        calls = " | ".join(
            f'{_literal(f"functions.{name}:")} idx {_literal(KIMI_ARGUMENT_BEGIN)} {rule}'
            for name, rule in names.items()
        )
        rules["kimi-call"] = f"({calls}) {_literal(KIMI_CALL_END)}"
        rules["idx"] = "[0-9] [0-9]?"
        if opener == KIMI_SECTION_BEGIN:
            more = "" if single else f'({_literal(KIMI_CALL_BEGIN)} kimi-call)* '
            rules["root"] = f'{_literal(KIMI_CALL_BEGIN)} kimi-call {more}{_literal(KIMI_SECTION_END)}'
        else:
            rules["root"] = "kimi-call"
    elif opener == HERMES_BEGIN:
        bodies = " | ".join(
            f'{_literal(chr(34) + name + chr(34))} space "," space "\\"arguments\\"" space ":" space {rule}'
            for name, rule in names.items()
        )
        rules["hermes-call"] = (f'"\\n"? "{{" space "\\"name\\"" space ":" space ({bodies}) '
                                f'"}}" "\\n"? {_literal(HERMES_END)}')
        rules["root"] = "hermes-call" if single else f'hermes-call ("\\n"? {_literal(HERMES_BEGIN)} hermes-call)*'
    else:
        raise ValueError(f"no tool-call grammar for opener {opener!r}")
    if include_opener:
        rules["calls"] = rules["root"]
        rules["root"] = f"{_literal(opener)} calls"
    rules.setdefault("space", '" "?')
    return "\n".join(f"{name} ::= {rule}" for name, rule in sorted(rules.items()))
