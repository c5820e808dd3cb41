"""The tool contract: typed parameters, a description from ``prompts/tools/<name>.md``, and
a registry that validates a model's call before running it.

A tool never raises to the loop, except for control flow (:class:`kcode.errors.AgentStop`:
``finish`` raises ``Submitted``). Invalid arguments, :class:`kcode.errors.ToolError` and
unexpected exceptions all become an error :class:`ToolResult` that the model reads.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kcode.cancel import CancelToken
from kcode.errors import AgentStop, ToolError
from kcode.llm.base import ToolCall, ToolSpec
from kcode.resources import read_prompt
from kcode.sandbox.base import Sandbox

__all__ = [
    "Params",
    "Tool",
    "ToolContext",
    "ToolResult",
    "ToolRegistry",
    "SessionState",
    "Approval",
    "Approver",
]

log = logging.getLogger(__name__)


class Params(BaseModel):
    """Base for tool parameter models: unknown arguments are rejected."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class SessionState:
    """State the tools share with the loop and that is saved with the session."""

    todo: list[dict[str, str]] = field(default_factory=list)
    # files the model has seen whole or in part (the pack, read_file, an edit's view) or written
    # itself (write_file), by their shown path: only those may be edited (kcode.tools.edit)
    seen_files: set[str] = field(default_factory=set)
    # of those, the files seen whole (packed whole, read from the first line to the last, or
    # written): only those may be replaced by a write_file that keeps little of them
    whole_files: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Approval:
    """A user's answer to a command that needs more than the sandbox allows: ``decision``
    "once" | "always" | "deny"; ``reason``: why, for a denial (the model reads it)."""

    decision: str
    reason: str = ""

    @property
    def granted(self) -> bool:
        return self.decision in ("once", "always")


# (needs: "network" | "write-outside", command, the model's reason, paths, the call's cancel token)
Approver = Callable[[str, str, str, list[str], CancelToken], Approval]


@dataclass
class ToolContext:
    root: Path  # the work tree the agent edits
    sandbox: Sandbox
    state: SessionState
    cancel: CancelToken = field(default_factory=CancelToken)
    test_command: str | None = None
    scratch_dir: Path | None = None  # host directory writable inside the sandbox
    step: int = 0
    emit: Callable[[Any], Any] = lambda event: None
    task: str | None = None  # the user's task: a generated file it names may be edited
    approve: Approver | None = None  # approvals = "on-request" (kcode.agent.run_control); None: never ask
    always_allowed: Callable[[], frozenset[str]] = frozenset  # the needs the user allowed "always" this session


@dataclass
class ToolResult:
    output: str
    is_error: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    changed_files: bool = False  # whether the tool may have changed the work tree


class Tool:
    """Subclasses set ``name`` and ``Params`` and implement :meth:`run`."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    may_change_files: ClassVar[bool] = False

    def run(self, params: Any, ctx: ToolContext) -> ToolResult:  # pragma: no cover
        raise NotImplementedError

    def description(self) -> str:
        return read_prompt(f"tools/{self.name}.md").strip()

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description(), parameters_schema(self.Params))


def parameters_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a parameter model in the plain form small models and grammar
    converters handle best: no ``title`` noise, ``$defs`` inlined, ``Optional[X]`` as ``X``.
    Made once per model class (every run, and every sub-agent, describes the same tools); each
    caller gets its own copy."""
    return copy.deepcopy(_schema_of(model))


@functools.lru_cache(maxsize=256)
def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    return _simplify(schema, definitions)


def _simplify(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_simplify(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _simplify({**target, **extra}, definitions)
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        kept = next(option for option in options if option != {"type": "null"})
        node = {**{k: v for k, v in node.items() if k != "anyOf"}, **kept}
    return {
        key: _simplify(value, definitions)
        for key, value in node.items()
        if not (key == "title" and isinstance(value, str))
    }


def format_validation_error(tool: Tool, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(arguments)"
        problems.append(f"- {where}: {item['msg']}")
    schema = json.dumps(parameters_schema(tool.Params), separators=(",", ":"))
    return (
        f"Invalid arguments for {tool.name}:\n" + "\n".join(problems) + f"\nExpected arguments (JSON schema): {schema}"
    )


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self._specs: list[ToolSpec] | None = None

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def without(self, *names: str) -> ToolRegistry:
        """The same tools but ``names``."""
        return ToolRegistry(tool for name, tool in self._tools.items() if name not in names)

    def with_tools(self, *tools: Tool) -> ToolRegistry:
        """These tools and ``tools`` (a tool of the same name is replaced)."""
        return ToolRegistry([*(t for n, t in self._tools.items() if n not in {x.name for x in tools}), *tools])

    def specs(self) -> list[ToolSpec]:
        if self._specs is None:
            self._specs = [tool.spec() for tool in self._tools.values()]
        return self._specs

    def execute(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        tool = self._tools.get(call.name)
        if tool is None:
            return ToolResult(
                f"Unknown tool {call.name!r}. Available tools: {', '.join(self._tools)}.",
                is_error=True,
            )
        try:
            params = tool.Params.model_validate(call.arguments)
        except ValidationError as error:
            return ToolResult(format_validation_error(tool, error), is_error=True)
        try:
            result = tool.run(params, ctx)
        except ToolError as error:
            return ToolResult(f"Error: {error}", is_error=True)
        except AgentStop:  # control flow for the loop (finish), not a failure
            raise
        except Exception as error:  # a bug in a tool must not end a 12-hour run
            log.exception("tool %s failed", call.name)
            return ToolResult(f"Error: {call.name} failed: {type(error).__name__}: {error}", is_error=True)
        if tool.may_change_files:
            result.changed_files = True
        return result
