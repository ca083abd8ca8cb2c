"""The embedded broker (config.fsbroker) under concurrent publishers and consumers.

Every test talks to the transport through kombu, in a folder of its own. Against kombu's own
filesystem transport (TRANSPORT = "filesystem") all but the last two fail: the stalled
publisher every time, the concurrent run nine times in ten, both with JSONDecodeError.
"""

import logging
import runpy
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from time import monotonic
from types import SimpleNamespace

import pytest
from celery import Celery
from kombu import Connection, Producer

from config import fsbroker

TRANSPORT = fsbroker.Transport
QUEUE = "fuzz"
LARGE = "0123456789abcdef" * 16384  # 256 KiB: a write that takes a while


def connect(folder, **options):
    return Connection("filesystem://", transport=TRANSPORT, transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), **options})


def publish(conn, body, **kwargs):
    Producer(conn.default_channel).publish(body, routing_key=QUEUE, serializer="json", **kwargs)


def get(conn):
    """The next message's body, or None when the queue is empty."""
    message = conn.default_channel.basic_get(QUEUE, no_ack=True)
    return None if message is None else message.decode()


class SlowHeader:
    """A header value whose serialization waits for a signal, like a publisher stalled mid-write."""

    def __init__(self):
        self.reached, self.go = threading.Event(), threading.Event()

    def __json__(self):  # kombu's JSON encoder calls this
        self.reached.set()
        self.go.wait(5)
        return "sent"


def test_a_consumer_never_sees_a_message_that_is_still_being_published(tmp_path):
    slow = SlowHeader()
    with connect(tmp_path) as publisher, connect(tmp_path) as consumer, ThreadPoolExecutor(1) as pool:
        publishing = pool.submit(publish, publisher, LARGE, headers={"stall": slow})
        assert slow.reached.wait(5)
        try:
            during = get(consumer)
        finally:
            slow.go.set()
        publishing.result()
        after = get(consumer)

    assert (during, after) == (None, LARGE)


def test_concurrent_publishers_and_consumers_get_each_large_message_once_and_intact(tmp_path):
    publishers, per_publisher, consumers = 4, 5, 3
    expected = [f"{p}-{n}:{LARGE}" for p in range(publishers) for n in range(per_publisher)]
    received, failed = [], threading.Event()
    deadline = monotonic() + 10  # a safety net only; the run takes well under a second

    def publish_all(p):
        with connect(tmp_path) as conn:
            for n in range(per_publisher):
                publish(conn, f"{p}-{n}:{LARGE}")

    def consume():
        with connect(tmp_path) as conn:
            while len(received) < len(expected) and not failed.is_set() and monotonic() < deadline:
                try:
                    body = get(conn)
                except Exception:
                    failed.set()  # a lost message would keep the others polling until the deadline
                    raise
                if body is not None:
                    received.append(body)

    with ThreadPoolExecutor(publishers + consumers) as pool:
        running = [pool.submit(consume) for _ in range(consumers)]
        running += [pool.submit(publish_all, p) for p in range(publishers)]
        for future in running:
            future.result()  # re-raises whatever a consumer or publisher raised

    assert sorted(received) == sorted(expected)


@pytest.mark.parametrize("content", [
    b'{"body": "half a mess',  # a stalled or crashed writer
    b"",  # created, never written
    b"\xff\xfe{}",  # not UTF-8
    b"[1, 2]",  # JSON, but not a message
], ids=["truncated", "empty", "binary", "not-an-object"])
def test_a_file_that_is_not_a_message_is_set_aside_with_one_warning(tmp_path, caplog, content):
    (tmp_path / f"1_bad.{QUEUE}.msg").write_bytes(content)
    with connect(tmp_path) as conn:
        publish(conn, "next")

        with caplog.at_level(logging.WARNING, logger="config.fsbroker"):
            bodies = [get(conn), get(conn)]

    assert bodies == ["next", None]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert f"1_bad.{QUEUE}.msg" in caplog.records[0].getMessage()
    assert (tmp_path / f"1_bad.{QUEUE}.msg.corrupt").read_bytes() == content


def test_consuming_does_not_go_through_the_temp_directory(tmp_path, monkeypatch):
    # kombu claims a file by moving it to the temp directory: when that is another
    # filesystem (a tmpfs /tmp), a copy that races other consumers' copies of the same file.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-directory"))
    broker = tmp_path / "broker"
    broker.mkdir()
    with connect(broker) as conn:
        publish(conn, "hello")

        body = get(conn)

    assert body == "hello"
    assert list(broker.iterdir()) == []


def test_consumed_messages_are_kept_when_the_transport_is_asked_to(tmp_path):
    processed = tmp_path / "processed"
    processed.mkdir()
    broker = tmp_path / "broker"
    broker.mkdir()
    with connect(broker, store_processed=True, processed_folder=str(processed)) as conn:
        publish(conn, "hello")

        body = get(conn)

    assert body == "hello"
    assert [p.name.endswith(f".{QUEUE}.msg") for p in processed.iterdir()] == [True]


@pytest.mark.parametrize("broker_url, transport", [
    (None, "config.fsbroker:Transport"),
    ("redis://localhost:6379/0", "redis"),
])
def test_only_the_embedded_broker_uses_this_transport(tmp_path, monkeypatch, broker_url, transport):
    # kombu takes an explicit transport over the URL's scheme, so the settings must not set
    # one beside a Redis URL.
    monkeypatch.setenv("RELAY_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("RELAY_BROKER_DIR", raising=False)
    if broker_url is None:
        monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    else:
        monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
    settings = runpy.run_module("config.settings.workers")  # read afresh, with this environment
    app = Celery(set_as_current=False)
    app.config_from_object(SimpleNamespace(**settings), namespace="CELERY")

    assert app.connection_for_write().transport_cls == transport
