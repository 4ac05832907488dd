"""Loopback fakes for the notification tests and benchmark (real HTTP on 127.0.0.1).

* :class:`FakeTelegram`: the Bot API's ``getUpdates`` (offset, a queue of updates the test puts
  in) and ``sendMessage`` (kept in ``sent``); a wrong token answers 401 as Telegram does.
* :class:`Receiver`: a webhook endpoint keeping every JSON body; ``answers`` (status, JSON) are
  given in order before the default 204 (a 429 with ``retry_after``, a 500...).
* :func:`refused_url` (nothing listens) and :class:`Hanging` (accepts connections, never answers).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional


class _Server:
    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size) or b"null")
                status, answer = owner.handle(self.path, body)
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, path: str, body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeTelegram(_Server):
    def __init__(self, token: str):
        super().__init__()
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.offsets: list[int] = []
        self._next = 1

    def say(self, chat: int, text: str) -> None:
        """A user writes ``text`` in ``chat``."""
        with self.lock:
            self.updates.append({"update_id": self._next, "message": {"message_id": self._next, "chat": {"id": chat},
                                                                     "text": text}})
            self._next += 1

    def handle(self, path: str, body: Any) -> tuple[int, Any]:
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = path[len(prefix):]
        with self.lock:
            if method == "getUpdates":
                offset = int(body.get("offset") or 0)
                self.offsets.append(offset)
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
                return 200, {"ok": True, "result": list(self.updates)}
            if method == "sendMessage":
                self.sent.append(body)
                return 200, {"ok": True, "result": {"message_id": len(self.sent), "chat": {"id": body["chat_id"]},
                                                    "text": body["text"]}}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def texts(self, chat: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat_id"] == chat]


class Receiver(_Server):
    def __init__(self, answers: Optional[list[tuple[int, Any]]] = None):
        super().__init__()
        self.bodies: list[Any] = []
        self.answers = list(answers or [])

    def handle(self, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.bodies.append(body)
            return self.answers.pop(0) if self.answers else (204, None)


def refused_url() -> str:
    """An address where nothing listens: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Hanging:
    """Accepts TCP connections (the kernel's backlog) and never answers: every request times out."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        return self

    def __exit__(self, *exc):
        self.sock.close()
