"""A real local HTTP receiver for webhook tests.

    with Receiver([Answer(500), Answer(500)], default=Answer(200)) as receiver:
        ...post to receiver.url...
    receiver.requests  # [Request(method, path, headers, raw_headers, body), ...]

It listens on 127.0.0.1 on a free port, in a daemon thread, and answers each request with
the next scripted Answer, then with `default`. Connections are kept alive (HTTP/1.1) as a
real receiver would; on exit every open connection is shut, so a pooled client connection
can never reach a receiver of an earlier test. An Answer may `hold` the response (to make
the client time out): the hold ends early when the receiver stops, so nothing waits long.
`most_open` is the most connections that were open at once.
"""

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Seconds to wait before answering; when the receiver stops first, nothing is answered.
    hold: float = 0.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; see raw_headers for repeats
    raw_headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        """Every value sent for this header name (case-insensitive)."""
        return [v for k, v in self.raw_headers if k.lower() == name.lower()]


class OpenConnections:
    """The connections a test server holds, so stopping it drops them as a dead endpoint would
    (ThreadingHTTPServer.shutdown stops accepting but leaves keep-alive connections open)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.most = 0  # the most connections open at once

    def add(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)
            self.most = max(self.most, len(self._open))

    def discard(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.discard(conn)

    def drop_all(self) -> None:
        with self._lock:
            connections = list(self._open)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TrackedHandler(BaseHTTPRequestHandler):
    """A keep-alive handler whose connections its server's owner can drop (set `open`)."""

    protocol_version = "HTTP/1.1"
    open: OpenConnections

    def setup(self):
        super().setup()
        self.open.add(self.connection)

    def finish(self):
        self.open.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass


class Receiver:
    def __init__(self, script: list[Answer] | tuple[Answer, ...] = (), *, default: Answer = Answer(200)):
        self.default = default
        self.requests: list[Request] = []
        self._script = list(script)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections = OpenConnections()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -----------------------------------------------------------------------

    def answer(self, *answers: Answer) -> "Receiver":
        """Append answers to the script: request N gets the Nth answer not yet used."""
        with self._lock:
            self._script.extend(answers)
        return self

    def _next_answer(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self._script.pop(0) if self._script else self.default

    # --- addresses -------------------------------------------------------------------------

    @property
    def most_open(self) -> int:
        """The most connections that were open at once."""
        return self._connections.most

    @property
    def port(self) -> int:
        assert self._server is not None, "the receiver is not running"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    # --- life ------------------------------------------------------------------------------

    def __enter__(self) -> "Receiver":
        receiver = self

        class Handler(TrackedHandler):
            open = receiver._connections

            def do_POST(self):
                self._handle()

            def do_GET(self):
                self._handle()

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    raw_headers=list(self.headers.items()),
                    body=body,
                )
                answer = receiver._next_answer(request)
                if answer.hold and receiver._stopping.wait(answer.hold):
                    self.close_connection = True
                    return
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if not any(k.lower() == "content-length" for k in answer.headers):
                        self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client gave up (a timeout under test)
                    self.close_connection = True

            def log_message(self, format, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), name="receiver",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()
        assert self._server is not None
        self._server.shutdown()
        self._connections.drop_all()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
