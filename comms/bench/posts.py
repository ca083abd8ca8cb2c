"""The client of the single-POST phase: the platform's POST /messages and the ceiling view
are measured with exactly this, in alternating rounds, so their rates compare.

http.client with bodies encoded beforehand, not requests: on two cores the client shares
the CPU with the servers it measures, and requests' own work per call (~1 ms) held the
ceiling view to about half of what wrk measures of it on this machine.
"""

import http.client
import json
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from tqdm import tqdm


def compare(urls: dict[str, str], bodies: Sequence[dict], *, rounds: int, clients: int,
            headers: dict[str, str], expect: int, progress: bool) -> dict[str, float]:
    """The requests per second each url answers for the same bodies, measured in `rounds`
    alternating rounds (A B, B A, A B, ...), so a change in the machine's load (other
    processes, a checkpoint) weighs on both alike. A few unmeasured posts first, so no
    server is timed while it warms up."""
    encoded = [json.dumps(body).encode() for body in bodies]
    options = {"clients": clients, "headers": {**headers, "Content-Type": "application/json"}, "expect": expect}
    for url in urls.values():
        post_all(url, encoded[:2 * clients], **options)
    took = dict.fromkeys(urls, 0.0)
    size = math.ceil(len(encoded) / rounds)
    bar = tqdm(total=len(encoded) * len(urls), desc="single POST", unit="req", disable=not progress)
    for index, start in enumerate(range(0, len(encoded), size)):
        part = encoded[start:start + size]
        for name in (list(urls) if index % 2 == 0 else list(reversed(urls))):
            took[name] += post_all(urls[name], part, **options)
            bar.update(len(part))
    bar.close()
    return {name: round(len(encoded) / seconds, 1) for name, seconds in took.items()}


def post_all(url: str, bodies: Sequence[bytes], *, clients: int, headers: dict[str, str], expect: int) -> float:
    """POST each body from `clients` threads, each on its own connection (reopened when the
    server closes it, as gunicorn's sync workers do), and return the seconds it took. A
    status other than `expect` stops the run."""
    target = urlsplit(url)
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
        list(pool.map(post, bodies))
    return time.monotonic() - started
