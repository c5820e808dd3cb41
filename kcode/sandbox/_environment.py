"""The environment a sandboxed command sees: an allow-list, never credentials."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

__all__ = ["filter_environment", "looks_secret"]

# Names that carry credentials by convention. They never pass the allow-list, whatever a
# profile lists (a profile can still set a fixed value with [env] set = {...}).
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|PRIVATE|SESSION", re.IGNORECASE)
# URLs with a user:password part (proxy or index URLs with credentials in them).
_URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]*@")


def looks_secret(name: str, value: str = "") -> bool:
    return bool(_SECRET_NAME.search(name) or _URL_WITH_PASSWORD.search(value))


def filter_environment(source: Mapping[str, str], allow: Iterable[str]) -> dict[str, str]:
    """The variables of ``source`` whose names match an ``allow`` pattern and look harmless."""
    patterns = list(allow)
    return {
        name: value
        for name, value in source.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns) and not looks_secret(name, value)
    }
