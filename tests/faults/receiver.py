"""A verifying webhook receiver that can go down and come back on the same port.

Each subscription posts to a path of its own; every request is verified with that
subscription's secret by the official `standardwebhooks` library and recorded by its
`webhook-id` (the event id, the same on every retry). `stop()` closes the listening socket
and every open keep-alive connection, so the port is really closed (connections refused)
until `start()` binds it again.
"""

import json
import threading
import time
from collections import defaultdict
from http.server import ThreadingHTTPServer

from standardwebhooks import Webhook

from tests.receiver import OpenConnections, TrackedHandler


class WebhookReceiver:
    def __init__(self):
        self.secrets: dict[str, str] = {}
        self.lock = threading.Lock()
        # path -> webhook-id -> (first arrival, monotonic; the verified payload)
        self.got: dict[str, dict[str, tuple[float, dict]]] = defaultdict(dict)
        self.requests: dict[str, int] = defaultdict(int)
        self.bad: list[str] = []
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._connections = OpenConnections()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _record(self, path: str, headers: dict, body: bytes) -> None:
        with self.lock:
            self.requests[path] += 1
            secret = self.secrets.get(path)
        if secret is None:
            with self.lock:
                self.bad.append(f"{path}: no subscription expects this path")
            return
        try:
            payload = Webhook(secret).verify(body, headers)
        except Exception as exc:  # the library raises its own WebhookVerificationError
            with self.lock:
                self.bad.append(f"{path}: {type(exc).__name__}: {exc}")
            return
        webhook_id = headers.get("webhook-id", "")
        with self.lock:
            if payload.get("id") != webhook_id:
                self.bad.append(f"{path}: webhook-id {webhook_id} but payload id {payload.get('id')}")
            self.got[path].setdefault(webhook_id, (time.monotonic(), payload))

    def received(self, path: str) -> dict[str, tuple[float, dict]]:
        with self.lock:
            return dict(self.got[path])

    def first_arrival(self, path: str, status_code: str) -> dict[str, float]:
        """messageId -> when its first webhook of this status arrived."""
        found: dict[str, float] = {}
        for at, payload in self.received(path).values():
            if payload.get("statusCode") == status_code:
                found[payload["messageId"]] = min(at, found.get(payload["messageId"], at))
        return found

    # --- life --------------------------------------------------------------------------------

    def start(self) -> None:
        receiver = self

        class Handler(TrackedHandler):
            open = receiver._connections
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                answer = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        # allow_reuse_address (SO_REUSEADDR) lets a restart bind the port its last life held.
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                         name="fault-receiver").start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._connections.drop_all()
        self._server = None

    @property
    def up(self) -> bool:
        return self._server is not None
