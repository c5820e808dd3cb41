"""kcode: a local-first, long-horizon autonomous coding agent."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kcode")  # the installed distribution's metadata (pyproject.toml)
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
