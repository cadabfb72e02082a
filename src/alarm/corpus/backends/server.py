"""A local OpenAI-compatible server over any backend, for tests and benchmarks."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from alarm.corpus.backends.base import Backend, ChatRequest, SamplingParams

log = logging.getLogger(__name__)

#: ``fault(body, seen)`` -> None, an HTTP status ("500", "429", "400", ...), "malformed" (a cut
#: JSON body), "slow:<seconds>" (answer late), or "drop" (close the connection without answering);
#: ``seen`` counts earlier requests with the same body.
FaultHook = Callable[[dict[str, Any], int], "str | None"]


class ChatServer:
    """``POST /v1/chat/completions`` on 127.0.0.1 over a :class:`Backend`, in a thread.

    For tests and benchmarks (and to share one local model between shard processes); not a
    production server. ``fault`` injects failures per request; ``stats`` counts requests,
    repeats of an earlier body (client retries) and faults served.
    """

    def __init__(self, backend: Backend, *, host: str = "127.0.0.1", port: int = 0, fault: FaultHook | None = None):
        self.backend = backend
        self.fault = fault
        self.stats: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._backend_lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="chat-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The OpenAI-style response to one request body (no faults)."""
        messages = list(body["messages"])
        prefix = ""
        if body.get("continue_final_message") and messages and messages[-1]["role"] == "assistant":
            prefix = messages.pop()["content"]
        params = SamplingParams(
            max_tokens=int(body.get("max_tokens") or 256),
            temperature=float(body.get("temperature", 0.7)),
            top_p=float(body.get("top_p", 1.0)),
            top_k=int(body.get("top_k", 20)),
            seed=body.get("seed"),
        )
        request = ChatRequest(tuple(messages), params, prefix)
        if self.backend.thread_safe:
            (c,) = self.backend.generate([request])
        else:
            with self._backend_lock:
                (c,) = self.backend.generate([request])
        return {
            "id": "chatcmpl-local",
            "object": "chat.completion",
            "model": body.get("model", "local"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
            ],
            "usage": {"completion_tokens": c.num_tokens},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": "not found"}')
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, b'{"error": "body is not JSON"}')
                    return
                with server._lock:
                    key = hashlib.sha256(raw).hexdigest()
                    seen = server._seen[key]
                    server._seen[key] += 1
                    server.stats["requests"] += 1
                    server.stats["repeats"] += seen > 0  # the same body again: a client retry
                fault = server.fault(body, seen) if server.fault else None
                try:
                    if fault:
                        with server._lock:
                            server.stats[f"fault:{fault.split(':')[0]}"] += 1
                    if fault and fault.isdigit():  # an HTTP status: 500, 503, 429, 400, ...
                        self._send(int(fault), b'{"error": "injected fault"}')
                    elif fault == "malformed":
                        self._send(200, b'{"choices": [{"message": ')
                    elif fault == "drop":
                        self.close_connection = True
                    else:
                        if fault and fault.startswith("slow:"):
                            time.sleep(float(fault.split(":", 1)[1]))
                        try:
                            payload = json.dumps(server.answer(body)).encode()
                        except Exception as err:  # a bad request or a backend failure: answer, don't die
                            log.warning("chat server: %s: %s", type(err).__name__, err)
                            self._send(500, json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
                            return
                        self._send(200, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left; nothing to answer

        return Handler
