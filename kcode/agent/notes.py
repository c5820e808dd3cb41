"""What kcode itself says to the model: nudges, a finish sent back, the plan reminder, format
help, loop-guard warnings (``prompts/loop/``), and compaction's request, framing and stubs
(``prompts/compaction/``). Each text is a file there (packaged with the other prompts), with
``{field}`` placeholders filled in here.
"""

from __future__ import annotations

import json
import re

from kcode.llm.base import ToolCall, ToolSpec
from kcode.resources import read_prompt

__all__ = [
    "LOOP_NOTES",
    "COMPACTION_NOTES",
    "NOTES",
    "loop_note",
    "compaction_note",
    "repair_note",
    "REPAIR_NOTES",
    "note_prefix",
    "malformed_call_note",
    "format_instructions_note",
    "answer_notes",
]

# every file in prompts/loop/ (without ".md") and the fields it takes
LOOP_NOTES: dict[str, tuple[str, ...]] = {
    "no_tool_call": (),  # an answer without a tool call
    "auto_tests": ("output",),  # kcode ran the tests for the model
    "finish_empty": (),  # a finish without changes, sent back
    "finish_added_only": ("files",),  # a finish whose changes only add files, sent back
    "finish_failing": ("failing",),  # a finish after a failing test run, sent back
    "plan_reminder": ("plan",),  # the plan, every few steps
    "malformed_call": ("problems", "tools"),  # calls that could not be run
    "format_instructions": ("schemas",),  # after several malformed calls in a row
    "repeated_call": ("count",),  # the same call again and again
    "loop_stopped": ("count",),  # ... until kcode forces a change
    "alternating_calls": ("period", "window"),  # A B A B A B
    "no_progress": ("steps",),  # no file changed, no new test result
    "output_cut": ("tokens",),  # the step reached the output cap (max_output_tokens)
    "step_interrupted": (),  # the user interrupted the step (kcode.agent.run_control)
    "call_skipped": (),  # the result of a call the interrupt left unstarted
}

# every file in prompts/compaction/ and the fields it takes
COMPACTION_NOTES: dict[str, tuple[str, ...]] = {
    "instructions": (),  # the system message of the summary request
    "summary_request": ("transcript", "plan"),  # its user message: what to summarize
    "transcript_cut": (),  # put before a transcript whose older part was cut
    "handoff_header": (),  # the first line of the note that replaces the middle
    "current_plan": ("plan",),  # the live plan, re-attached to the note
    "mechanical_summary": ("calls",),  # the note when the model could not write one
    "masked_output": ("chars", "start"),  # an old tool output, masked
}

# every file in prompts/repair/ and the fields it takes (kcode.agent.repair)
REPAIR_NOTES: dict[str, tuple[str, ...]] = {
    "system": (),  # the system message of a rewrite request
    "request": ("task", "failures", "definition", "path", "start", "end", "language", "code"),  # its user message
    "outline": ("outline",),  # a method's class, shown before the request
    "fixed": ("failed_before", "definition", "path", "passed", "diff"),  # the note of a repair that made the tests pass
    "not_fixed": ("failed", "failing", "suspects", "tried", "failure"),  # the loop's head start when none did
}

# prompt folder -> its notes
NOTES: dict[str, dict[str, tuple[str, ...]]] = {"loop": LOOP_NOTES, "compaction": COMPACTION_NOTES, "repair": REPAIR_NOTES}

_FIELD = re.compile(r"\{(\w+)\}")


def _note(folder: str, name: str, fields: dict[str, object]) -> str:
    declared = NOTES[folder][name]
    if set(fields) != set(declared):
        raise TypeError(f"{folder} note {name!r} takes {declared}, got {tuple(fields)}")
    # one pass over the template: a value that holds "{...}" itself is left as it is
    return _FIELD.sub(lambda match: str(fields.get(match[1], match[0])), read_prompt(f"{folder}/{name}.md").strip())


def loop_note(name: str, **fields: object) -> str:
    """The text of ``prompts/loop/<name>.md`` with its fields filled in (read once, then cached)."""
    return _note("loop", name, fields)


def repair_note(note: str, **fields: object) -> str:
    """The text of ``prompts/repair/<note>.md`` with its fields filled in."""
    return _note("repair", note, fields)


def compaction_note(name: str, **fields: object) -> str:
    """The text of ``prompts/compaction/<name>.md`` with its fields filled in."""
    return _note("compaction", name, fields)


def note_prefix(folder: str, name: str) -> str:
    """What every text of a note starts with: its template up to the first field (to tell
    such a text apart, e.g. an output that is masked already)."""
    NOTES[folder][name]  # a KeyError for a note that does not exist
    return read_prompt(f"{folder}/{name}.md").strip().split("{", 1)[0]


def malformed_call_note(broken: list[ToolCall], tool_names: list[str]) -> str:
    """Why the model's calls in ``broken`` could not be run (they were not)."""
    problems = "\n".join(f"- {call.name or '(no name)'}: {call.error}" for call in broken)
    return loop_note("malformed_call", problems=problems, tools=", ".join(tool_names))


def answer_notes(finish_reason: str, output_tokens: int, broken: list[ToolCall], tool_names: list[str]) -> list[str]:
    """What the model hears about its answer itself: that it was cut at the output cap
    (``finish_reason`` "length"), and why calls in ``broken`` were not run."""
    notes = [loop_note("output_cut", tokens=output_tokens)] if finish_reason == "length" else []
    return notes + ([malformed_call_note(broken, tool_names)] if broken else [])


def format_instructions_note(specs: list[ToolSpec]) -> str:
    """How to call a tool, with every tool's schema: after several malformed calls in a row."""
    schemas = "\n".join(f"- {spec.name}: {json.dumps(spec.parameters, separators=(',', ':'))}" for spec in specs)
    return loop_note("format_instructions", schemas=schemas)
