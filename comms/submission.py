"""Accepting messages: one or a batch, each with its fallback chain, in a few queries."""

from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from . import due, lifecycle
from .ids import new_id
from .models import Application, Message
from .publish import sends_on_commit, starts_on_commit
from .status import Status


def message_submit(*, application: Application, data: dict[str, Any],
                   idempotency_key: str | None = None, now: datetime | None = None
                   ) -> tuple[Message, bool]:
    """Accept one message. Returns (message, created); a repeated Idempotency-Key returns
    the first message and creates nothing."""
    if idempotency_key:
        existing = _by_idempotency_key(application, idempotency_key)
        if existing:
            return existing, False
    try:
        (message,) = message_submit_batch(
            application=application, items=[data], idempotency_key=idempotency_key, now=now
        )
    except IntegrityError:
        # Another request with the same key won the race: it is the first result.
        existing = _by_idempotency_key(application, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return message, True


def message_submit_batch(*, application: Application, items: Sequence[dict[str, Any]],
                         context: dict | None = None, idempotency_key: str | None = None,
                         now: datetime | None = None) -> list[Message]:
    """Accept validated messages: their rows, first events and webhook deliveries written in
    one statement, then one send task per chunk. Returns the head messages in input order."""
    now = now or timezone.now()
    heads: list[Message] = []
    rows: list[Message] = []
    for item in items:
        chain = _chain(application, item, dict(context or {}), now)
        heads.append(chain[0])
        rows.extend(chain)
    if idempotency_key and heads:
        heads[0].idempotency_key = idempotency_key
    with _one_transaction():
        # Tails first, so every fallback_to points at a row that exists.
        lifecycle.create(list(reversed(rows)), now)
        sends_on_commit([m.id for m in heads if m.status == Status.QUEUED])
        starts_on_commit([(m.id, m.send_at) for m in heads
                          if m.status == Status.SCHEDULED and due.within_lookahead(m.send_at, now)], now)
    return heads


def _chain(application: Application, item: dict, inherited: dict, now: datetime) -> list[Message]:
    """The message and its fallbacks, linked; only the head starts, the rest wait."""
    chain: list[Message] = []
    node: dict | None = item
    while node is not None:
        context = {**inherited, **(node.get("context") or {})}
        message = Message(
            id=new_id(),
            application=application,
            channel=node["channel"],
            sender=node.get("sender") or "",
            receiver=node["receiver"],
            content=node["content"],
            context=context,
            send_at=node.get("send_at"),
            expires_at=node.get("expires_at"),
            status=Status.PENDING,
            created_at=now,
            updated_at=now,
        )
        if chain:
            chain[-1].fallback_to_id = message.id
        chain.append(message)
        inherited = context
        node = node.get("fallback")
    head = chain[0]
    if head.send_at and head.send_at > now:
        head.status, head.due_at = Status.SCHEDULED, due.schedule_due(head.send_at, now)
    else:
        head.status, head.due_at = Status.QUEUED, now
    head.event_seq = 1
    return chain


def _one_transaction():
    """On PostgreSQL the rows go out as one multi-statement query, which is a transaction of
    its own (comms.bulk), so no BEGIN and COMMIT round trips are needed around it; the
    tasks are published right after it. Elsewhere, a transaction around the inserts."""
    return nullcontext() if connection.vendor == "postgresql" else transaction.atomic()


def _by_idempotency_key(application: Application, key: str) -> Message | None:
    return Message.objects.filter(application=application, idempotency_key=key).first()
