"""The client of the single-POST phases: the platform's POST /messages and the ceiling view
are measured with exactly this, so their rates compare.

http.client with bodies encoded beforehand, not requests: on two cores the client shares
the CPU with the servers it measures, and requests' own work per call (~1 ms) held the
ceiling view to about half of what wrk measures of it on this machine.
"""

import http.client
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from tqdm import tqdm


def post_all(url: str, bodies: Sequence[dict], *, clients: int, headers: dict[str, str], expect: int,
             label: str, progress: bool) -> float:
    """POST each body as JSON from `clients` threads, each on its own kept-alive connection,
    and return the requests answered per second. A status other than `expect` stops the run."""
    target = urlsplit(url)
    headers = {**headers, "Content-Type": "application/json"}
    encoded = [json.dumps(body).encode() for body in bodies]
    connections = threading.local()

    def post(body: bytes) -> None:
        if not hasattr(connections, "http"):
            connections.http = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        connections.http.request("POST", target.path, body, headers)
        response = connections.http.getresponse()
        answer = response.read()
        if response.status != expect:
            raise RuntimeError(f"POST {url}: {response.status} {answer[:300]!r}")

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(tqdm(pool.map(post, encoded), total=len(encoded), desc=label, unit="req", disable=not progress))
    return round(len(encoded) / (time.monotonic() - started), 1)
