"""Sessions: the append-only event log, metadata, listing."""

from kcode.session.log import SessionLog, log_in_use, read_event_dicts, read_events
from kcode.session.store import SessionMeta, SessionStore, new_session_id

__all__ = ["SessionLog", "log_in_use", "read_event_dicts", "read_events", "SessionMeta", "SessionStore", "new_session_id"]
