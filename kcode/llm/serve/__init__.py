"""Kept-alive model servers (ollama's ``keep_alive``): a GGUF model loaded once in a server
process of its own, on 127.0.0.1 with a bearer token, used by the next runs until it has been
idle for ``keep_alive`` (config, e.g. ``"5m"``; the default ``"0"`` runs the model in each
run's own process, as before). The next run skips the model's load, and the server's context still
holds the last prompt head's KV state, so only the new suffix is evaluated.

- :func:`connect` finds or starts the server for a model file and its settings (the settings
  that change what it computes: a different model, context, threads, grammar or seed is a
  different server); :class:`ServedModel` is the ``ChatModel`` over it;
- :func:`running_servers` and :func:`stop_servers` are ``kcode models ps`` and ``stop``;
- the server itself is :mod:`kcode.llm.serve._server` (``python -m kcode.llm.serve``); its
  records are :mod:`kcode.llm.serve._records`.

One server takes one step at a time: steps that arrive together are queued, so two runs at
once (or a swarm's sub-agents) take turns on it.
"""

from kcode.llm.serve._client import START_TIMEOUT, ServedModel, connect, running_servers, stop_servers
from kcode.llm.serve._records import ServerRecord, parse_keep_alive, server_key

__all__ = [
    "START_TIMEOUT",
    "ServedModel",
    "ServerRecord",
    "connect",
    "parse_keep_alive",
    "running_servers",
    "server_key",
    "stop_servers",
]
