"""The one exception tree of kcode.

Third-party errors are translated into these at the boundary (model backends, git, the
sandbox). The agent loop uses the ``AgentStop`` branch for control flow: each carries what
the loop records when it stops.

    KcodeError
    ├── UsageError              bad flags, bad config, unknown session (exit code 2)
    ├── ConfigError(UsageError)
    ├── ModelError              anything the model backend reports
    │   ├── TransientModelError rate limits, 5xx, timeouts, cut streams, no connection:
    │   │   │                   retried by the agent loop (kcode.agent.retry.RetryPolicy)
    │   │   ├── RateLimited
    │   │   ├── ServerError
    │   │   ├── ModelTimeout
    │   │   ├── StreamTruncated
    │   │   └── ModelUnreachable
    │   ├── ModelUnavailable    missing model file, turns run out: fatal
    │   └── ModelRequestError   a 4xx other than 429: fatal, explained
    ├── ToolError               a tool refused its input; shown to the model, never fatal
    │   └── PathOutsideRepo
    ├── SandboxError            the sandbox cannot run commands at all
    ├── VcsError                git failed
    ├── SessionError            the session log is unreadable or missing
    │   └── ControlBusy         another process holds the session's control channel
    ├── SkillError              a skill is invalid, or the model's SKILL.md for a session is
    │                           (kcode.skills; skipped with a warning in discovery)
    └── AgentStop               control flow in the loop (passes through tool execution)
        ├── Submitted           the finish tool hands the work in; the loop reviews it
        ├── BudgetExhausted
        ├── Interrupted         the run was stopped (it ends as "interrupted")
        ├── StepInterrupted     the step was interrupted (the run goes on)
        └── FormatError
"""

from __future__ import annotations

__all__ = [
    "KcodeError",
    "UsageError",
    "ConfigError",
    "ModelError",
    "TransientModelError",
    "RateLimited",
    "ServerError",
    "ModelTimeout",
    "StreamTruncated",
    "ModelUnreachable",
    "ModelUnavailable",
    "ModelRequestError",
    "ToolError",
    "PathOutsideRepo",
    "SandboxError",
    "VcsError",
    "SessionError",
    "ControlBusy",
    "SkillError",
    "AgentStop",
    "Submitted",
    "BudgetExhausted",
    "Interrupted",
    "StepInterrupted",
    "FormatError",
]


class KcodeError(Exception):
    """Base of every error kcode raises on purpose."""


class UsageError(KcodeError):
    """The user asked for something that cannot work (exit code 2)."""


class ConfigError(UsageError):
    """A configuration file or value is invalid."""


class ModelError(KcodeError):
    """The model backend failed."""


class TransientModelError(ModelError):
    """A failure worth retrying with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientModelError):
    pass


class ServerError(TransientModelError):
    pass


class ModelTimeout(TransientModelError):
    pass


class StreamTruncated(TransientModelError):
    pass


class ModelUnreachable(TransientModelError):
    """No connection to the model's server (refused, reset or unresolvable before an answer)."""


class ModelUnavailable(ModelError):
    """The model cannot be reached or loaded, or has nothing more to say."""


class ModelRequestError(ModelError):
    """The server rejected the request (a 4xx other than 429); retrying will not help."""


class ToolError(KcodeError):
    """A tool could not do what was asked; the message is shown to the model."""


class PathOutsideRepo(ToolError):
    pass


class SandboxError(KcodeError):
    """Commands cannot be run safely (e.g. bubblewrap is missing)."""


class VcsError(KcodeError):
    """A git operation failed."""


class SessionError(KcodeError):
    """A session log is missing or unreadable."""


class ControlBusy(SessionError):
    """Another process writes the session's control channel (one writer at a time)."""


class SkillError(KcodeError):
    """A skill is invalid (its SKILL.md, or a file of its folder), or the SKILL.md a model
    wrote for a session cannot be saved."""


class AgentStop(KcodeError):
    """Raised inside the loop to stop it; caught in one place."""


class Submitted(AgentStop):
    """The work is handed in: raised by the ``finish`` tool (or by kcode, after answers without
    a tool call once the changes passed the tests). The loop ends the run with it unless
    verification sends it back (kcode.agent.verify)."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


class BudgetExhausted(AgentStop):
    """A step, time or token budget ran out."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget


class Interrupted(AgentStop):
    """The user (or a signal) cancelled the run."""


class StepInterrupted(AgentStop):
    """The user interrupted the current step: it ends, the run goes on."""


class FormatError(AgentStop):
    """The model's output could not be understood; the message goes back to the model."""
