"""The agent-computer interface: the tools the model calls."""

from kcode.tools.base import Params, SessionState, Tool, ToolContext, ToolRegistry, ToolResult
from kcode.tools.edit import EditFileTool
from kcode.tools.files import ListFilesTool, ReadFileTool, WriteFileTool
from kcode.tools.plan import FinishTool, TodoTool
from kcode.tools.repo_map import RepoMapTool
from kcode.tools.search import SearchTool
from kcode.tools.shell import BashTool
from kcode.tools.testing import RunTestsTool

__all__ = [
    "Params",
    "SessionState",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "default_tools",
]


def default_tools() -> ToolRegistry:
    """The standard tool set, in the order the model sees it."""
    return ToolRegistry(
        [
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
    )
