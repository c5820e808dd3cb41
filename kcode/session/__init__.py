"""Sessions: the append-only event log, metadata, listing."""

from kcode.session.log import SessionLog, read_event_dicts, read_events
from kcode.session.store import SessionMeta, SessionStore, new_session_id

__all__ = ["SessionLog", "read_event_dicts", "read_events", "SessionMeta", "SessionStore", "new_session_id"]
