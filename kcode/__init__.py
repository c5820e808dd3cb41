"""kcode: a local-first, long-horizon autonomous coding agent."""

__version__ = "0.1.0"

__all__ = ["__version__"]
