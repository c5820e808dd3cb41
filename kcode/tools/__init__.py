"""The agent-computer interface: the tools the model calls."""

from collections.abc import Sequence

from kcode.skills import Skill

from kcode.tools.base import Params, SessionState, Tool, ToolContext, ToolRegistry, ToolResult
from kcode.tools.edit import EditFileTool
from kcode.tools.files import ListFilesTool, ReadFileTool, WriteFileTool
from kcode.tools.plan import FinishTool, TodoTool
from kcode.tools.repo_map import RepoMapTool
from kcode.tools.search import SearchTool
from kcode.tools.shell import BashTool
from kcode.tools.skill import SkillTool
from kcode.tools.testing import RunTestsTool

__all__ = [
    "Params",
    "SessionState",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "SkillTool",
    "default_tools",
]


def default_tools(skills: Sequence[Skill] = ()) -> ToolRegistry:
    """The standard tool set, in the order the model sees it; with ``skills``, the ``skill``
    tool that loads them comes last (without any, the model never sees it)."""
    tools: list[Tool] = [
        ReadFileTool(),
        ListFilesTool(),
        SearchTool(),
        RepoMapTool(),
        EditFileTool(),
        WriteFileTool(),
        BashTool(),
        RunTestsTool(),
        TodoTool(),
        FinishTool(),
    ]
    if skills:
        tools.append(SkillTool(skills))
    return ToolRegistry(tools)
