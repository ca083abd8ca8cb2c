"""One pooled `requests.Session` per process and purpose: connections are reused across
calls, never shared across a fork (Celery's prefork children each build their own)."""

import os

import requests

_sessions: dict[str, tuple[int, requests.Session]] = {}


def process_session(purpose: str) -> requests.Session:
    pid = os.getpid()
    held = _sessions.get(purpose)
    if held is None or held[0] != pid:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        held = _sessions[purpose] = (pid, session)
    return held[1]
