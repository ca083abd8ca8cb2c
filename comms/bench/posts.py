"""The client of the single-POST phases: the platform's POST /messages and the ceiling view
are measured with exactly this, so their rates compare."""

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import requests
from tqdm import tqdm


def post_all(url: str, bodies: Sequence[dict], *, clients: int, headers: dict[str, str], expect: int,
             label: str, progress: bool) -> float:
    """POST each body as JSON from `clients` threads, each with its own kept-alive session,
    and return the requests answered per second. A status other than `expect` stops the run."""
    sessions = threading.local()

    def post(body: dict) -> None:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
            sessions.session.headers.update(headers)
        response = sessions.session.post(url, json=body)
        if response.status_code != expect:
            raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:300]}")

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(tqdm(pool.map(post, bodies), total=len(bodies), desc=label, unit="req", disable=not progress))
    return round(len(bodies) / (time.monotonic() - started), 1)
