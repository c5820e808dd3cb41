"""The session log's format version, and reading lines written by earlier versions.

Every line kcode writes carries ``"v": LOG_VERSION``. A version is per line, not per file,
because ``kcode resume`` appends to the log it continues: a log started by an older kcode
and resumed by this one holds lines of both versions.

- version 1 (no ``"v"``): events without ``agent_id``/``parent_id``. Read as the top-level
  agent's: ``agent_id`` is the session id of the last ``session.started`` line before it.
- version 2: every event names its agent (``agent_id``, and ``parent_id`` for a sub-agent).
  Lines may carry ``"seq"``, their 1-based line number (older version-2 lines do not; a
  reader counts lines then).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["LOG_VERSION", "LineUpgrader"]

LOG_VERSION = 2

log = logging.getLogger(__name__)


class LineUpgrader:
    """Turns the lines of one log, in order, into current-version event dicts (``"v"`` removed)."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._session_id = ""
        self._warned_newer = False

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        version = data.pop("v", 1)
        data.pop("seq", None)  # the line's number in the log (kcode.session.log), not the event's
        if data.get("type") == "session.started":
            self._session_id = str(data.get("session_id", ""))
        if not isinstance(version, int) or version < 1:
            version = 1
        if version > LOG_VERSION and not self._warned_newer:
            self._warned_newer = True
            log.warning("%s: written by a newer kcode (log version %s, this one reads %d); reading what it knows", self._source, version, LOG_VERSION)
        if version == 1:
            data.setdefault("agent_id", self._session_id)
        return data
