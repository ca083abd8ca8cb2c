"""An endpoint that accepts connections and never answers: what a hung webhook receiver
looks like from Relay's side.

    hanging = Hanging()            # listens on 127.0.0.1, a free port, in a daemon thread
    ...subscribe hanging.url + "/hang/1"...
    hanging.max_open["/hang/1"]    # the most connections open at once on that path

It reads requests but never answers, and closes a socket only after its client gave up, so
each client times out exactly as it would against a real hung server. Per request path it
counts connections open now, the most open at once, and when each request arrived.
"""

import selectors
import socket
import threading
import time
from collections import defaultdict


class Hanging:
    """Accepts and reads, never answers, never closes first (only after the client has). Per request path: connections
    open now, the most open at once, and the time of each new request."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.listener.setblocking(False)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open: dict[str, int] = defaultdict(int)
        self.max_open: dict[str, int] = defaultdict(int)
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.total_open = self.total_max = 0
        self.conns: dict[socket.socket, dict] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                sock = key.fileobj
                if sock is self.listener:
                    conn, _ = self.listener.accept()
                    conn.setblocking(False)
                    self.conns[conn] = {"buf": b"", "path": None}
                    sel.register(conn, selectors.EVENT_READ)
                    with self.lock:
                        self.total_open += 1
                        self.total_max = max(self.total_max, self.total_open)
                    continue
                state = self.conns[sock]
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                with self.lock:
                    if not data:  # the client gave up: only then is the socket closed
                        sel.unregister(sock)
                        sock.close()
                        del self.conns[sock]
                        self.total_open -= 1
                        if state["path"]:
                            self.open[state["path"]] -= 1
                        continue
                    if state["path"] is None:
                        state["buf"] += data
                        if b"\r\n" in state["buf"]:
                            line = state["buf"].split(b"\r\n", 1)[0].decode("latin-1").split()
                            path = state["path"] = line[1] if len(line) > 1 else "?"
                            self.arrivals[path].append(time.monotonic())
                            self.open[path] += 1
                            self.max_open[path] = max(self.max_open[path], self.open[path])

    def per_minute(self, path, since, until):
        with self.lock:
            n = sum(1 for t in self.arrivals[path] if since <= t < until)
        return round(60 * n / (until - since), 2) if until > since else None

    def release(self):
        """Hang up on every open connection: their clients fail at once instead of waiting."""
        with self.lock:
            for conn in list(self.conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
