"""Local doubles of providers' APIs on 127.0.0.1. JsonApi answers each POST with
what `answer(path, headers, body)` returns, as (status, JSON object)."""

import json
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[str, dict, bytes], tuple[int, dict]]


class JsonApi:
    def __init__(self, answer: Answer):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, reply = answer(self.path, dict(self.headers), body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "JsonApi":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


POSTMARK_ID = "0a129aee-e1cd-480d-b08d-4f48548ff48d"  # the first message's id; then one more each


class PostmarkDouble:
    """Answers POST /email as Postmark's API does; `answers` scripts (status, body)."""

    def __init__(self):
        self.requests: list[tuple[dict, dict]] = []
        self.answers: list[tuple[int, dict]] = []
        self.api = JsonApi(self._answer).start()
        self.url = self.api.url + "/"

    def _answer(self, path: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        body = json.loads(raw)
        self.requests.append((headers, body))
        if self.answers:
            return self.answers.pop(0)
        message_id = str(uuid.UUID(int=uuid.UUID(POSTMARK_ID).int + len(self.requests) - 1))
        return 200, {"To": body["To"], "SubmittedAt": "2026-11-23T10:00:00Z", "MessageID": message_id,
                     "ErrorCode": 0, "Message": "OK"}
