"""kcode.context: the repository pack — tree-sitter tags, reference-graph ranking, and
token-budget packing (see docs/context.md).

The agent calls :func:`build_pack` for the prompt's repository block; the ``repo_map`` tool
calls :func:`lookup` for what the pack left out. Both share one warm index per repository.
"""

from kcode.context.lookup import lookup
from kcode.context.pack import MODES, Pack, Packer, build_pack, default_budget, get_packer

__all__ = ["build_pack", "default_budget", "get_packer", "lookup", "Pack", "Packer", "MODES"]
