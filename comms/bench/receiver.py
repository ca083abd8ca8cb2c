"""A webhook receiver in its own process, so it never shares a GIL with the load it measures.

It verifies every request with the official `standardwebhooks` library and the exact
payload shape, and reports (event id, message id, statusCode, received at) through a queue.
"""

import multiprocessing
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

REQUIRED = {"id", "statusCode", "messageId", "channelName", "context", "timeStamp"}
OPTIONAL = {"errorCode", "errorMessage", "fallbackTo", "env", "link", "sequence"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000$")


def shape_problem(payload: dict, headers: dict) -> str:
    keys = set(payload)
    if not REQUIRED <= keys <= REQUIRED | OPTIONAL:
        return f"keys {sorted(keys)}"
    if any(v is None for v in payload.values()):
        return "a null field"
    if not (HEX32.match(payload["id"]) and HEX32.match(payload["messageId"])):
        return "ids are not 32 lowercase hex"
    if not TIMESTAMP.match(payload["timeStamp"]):
        return f"timeStamp {payload['timeStamp']!r}"
    if headers.get("webhook-id") != payload["id"]:
        return "webhook-id is not the event id"
    if headers.get("content-type") != "application/json" or not headers.get("user-agent"):
        return "content-type or user-agent"
    return ""


def _handler(secret_queue, records) -> type[BaseHTTPRequestHandler]:
    verifier: dict[str, Webhook] = {}
    # Requests arrive concurrently: one thread takes a path's secret off the queue while the
    # others wait here for it, instead of waiting on the (then empty) queue and giving up.
    learning = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received = time.time()
            headers = {k.lower(): v for k, v in self.headers.items()}
            problem = ""
            try:
                with learning:
                    while self.path not in verifier:
                        path, secret = secret_queue.get(timeout=5)
                        verifier[path] = Webhook(secret)
                payload = verifier[self.path].verify(body, headers)
                problem = shape_problem(payload, headers)
            except Exception as exc:
                payload, problem = {}, f"{type(exc).__name__}: {exc}"
            records.put((payload.get("id"), payload.get("messageId"), payload.get("statusCode"),
                         received, problem))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # the bare-request reference
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


def _serve(secret_queue, records, port_value, ready):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(secret_queue, records))
    server.daemon_threads = True
    port_value.value = server.server_port
    ready.set()
    server.serve_forever()


class Receiver:
    def __init__(self):
        ctx = multiprocessing.get_context("spawn")
        self.secrets = ctx.Queue()
        self.records = ctx.Queue()
        self._port = ctx.Value("i", 0)
        ready = ctx.Event()
        self.process = ctx.Process(target=_serve, args=(self.secrets, self.records, self._port, ready),
                                   daemon=True)
        self.process.start()
        if not ready.wait(20):
            raise RuntimeError("the webhook receiver did not start")
        self.url = f"http://127.0.0.1:{self._port.value}"
        self.got: list[tuple] = []

    def add_secret(self, path: str, secret: str) -> None:
        self.secrets.put((path, secret))

    def drain(self) -> list[tuple]:
        while True:
            try:
                self.got.append(self.records.get_nowait())
            except Exception:
                return self.got

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)

