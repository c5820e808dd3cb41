#!/usr/bin/env python3
"""A stand-in for llama.cpp's ``llama-server`` binary (not on the test machines): it takes
the flags kcode passes, checks the API key, serves /health, /metrics, /props and streamed
chat completions (each takes 0.3 s), and writes its arguments and the most requests it had
in flight at once to $FAKE_LLAMA_SERVER_LOG."""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("-m", required=True)
parser.add_argument("--host", required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--parallel", type=int, required=True)
parser.add_argument("--ctx-size", type=int, required=True)
parser.add_argument("--api-key", required=True)
args, _ = parser.parse_known_args()
state = {"argv": sys.argv[1:], "peak": 0, "now": 0, "done": 0}
lock = threading.Lock()


def save() -> None:
    """Written whole and renamed into place: a reader never sees a half-written (or empty) log."""
    path = os.environ["FAKE_LLAMA_SERVER_LOG"]
    with open(f"{path}.{threading.get_ident()}", "w") as handle:
        json.dump(state, handle)
    os.replace(handle.name, path)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def _send(self, status, body, kind="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        if self.headers.get("Authorization") == f"Bearer {args.api_key}":
            return True
        self._send(401, {"error": "invalid api key"})
        return False

    def do_GET(self):
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if not self._authorized():
            return
        if self.path == "/metrics":
            return self._send(200, f"llamacpp:requests_processing {state['now']}\nllamacpp:n_decode_total {state['done']}\n", "text/plain")
        if self.path == "/props":
            return self._send(200, {"default_generation_settings": {"n_ctx": args.ctx_size // args.parallel}})
        self._send(404, {"error": "no such path"})

    def do_POST(self):
        if not self._authorized():
            return
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": "no such path"})
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            save()  # before the reply: the client cannot read the log before its request counted
        time.sleep(0.3)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for delta in ({"role": "assistant", "content": "ok"}, {"content": " done"}):
            self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode())
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 2}}
        self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()
        with lock:
            state["now"] -= 1
            state["done"] += 1
            save()


save()
server = ThreadingHTTPServer((args.host, args.port), Handler)
server.daemon_threads = True
server.serve_forever()
