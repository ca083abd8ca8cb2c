"""The health console: its per-minute rollup against the history it rolls up, and the page."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from comms.models import Application, Channel, Message, MessageEvent
from console import queries, rollup
from console.models import ACCEPTED, LatencyMinute, StatusMinute, WebhookMinute
from deliveries.models import Delivery, DeliveryAttempt, Subscription


def _message(app, channel, created, steps, **fields) -> Message:
    """A message accepted at `created` with events [(code, seconds after), ...]."""
    message = Message.objects.create(application=app, channel=channel, receiver="+447700900123",
                                     status=steps[-1][0], event_seq=len(steps), **fields)
    Message.objects.filter(pk=message.pk).update(created_at=created, updated_at=created)
    for seq, (code, after) in enumerate(steps, 1):
        MessageEvent.objects.create(message=message, sequence=seq, status_code=code,
                                    created_at=created + timedelta(seconds=after))
    return message


def _delivery(sub, event, status, attempts: list[int | None], due_at=None) -> Delivery:
    d = Delivery.objects.create(subscription=sub, event=event, status=status, attempts=len(attempts),
                                due_at=due_at, created_at=event.created_at, updated_at=event.created_at)
    for n, code in enumerate(attempts, 1):
        DeliveryAttempt.objects.create(delivery=d, number=n, status_code=code,
                                       attempted_at=event.created_at + timedelta(seconds=n))
    return d


def make_history(now):
    """Two channels, one application, three subscriptions (healthy, failing, disabled):
    sms: 4 delivered (2.2 s) and 2 failed half an hour ago, one stalled QUEUED, one SENT;
    email: 3 delivered (20.2 s) five hours ago."""
    app = Application.objects.create(name="acme")
    sms, email = Channel.objects.create(name="sms", type="simulator"), Channel.objects.create(name="email", type="simulator")
    ok, failing = Subscription.objects.create(application=app, url="https://hooks.example.com/ok", secret="s"), \
        Subscription.objects.create(application=app, url="https://hooks.example.com/bad", secret="s",
                                    failing_since=now - timedelta(minutes=20))
    Subscription.objects.create(application=app, url="https://hooks.example.com/gone", secret="s", active=False,
                                disabled_at=now - timedelta(hours=2), disabled_reason="The endpoint answered 410 Gone")
    delivered = [("QUEUED", 0), ("SENT", 0.2), ("DELIVERED", 2.2)]
    for i in range(4):
        m = _message(app, sms, now - timedelta(minutes=30, seconds=i), delivered)
        _delivery(ok, m.events.get(status_code="DELIVERED"), "succeeded", [200])
    for i in range(2):
        m = _message(app, sms, now - timedelta(minutes=31, seconds=i), [("QUEUED", 0), ("SENT", 0.2),
                                                                          ("DELIVERY_FAILED", 3)])
    _delivery(failing, m.events.get(status_code="DELIVERY_FAILED"), "pending", [500, None],
              due_at=now - timedelta(seconds=30))
    for i in range(3):
        _message(app, email, now - timedelta(hours=5, seconds=i), [("QUEUED", 0), ("SENT", 0.2), ("DELIVERED", 20.2)])
    _message(app, sms, now - timedelta(minutes=2), [("QUEUED", 0)], due_at=now - timedelta(minutes=2))
    # No due time: its provider is never polled for a missing receipt.
    _message(app, sms, now - timedelta(minutes=10), [("QUEUED", 0), ("SENT", 0.2)])
    return {"app": app, "sms": sms, "email": email, "ok": ok, "failing": failing}


@pytest.fixture
def history(db):
    now = timezone.now()
    return {"now": now, **make_history(now)}


def _rolled_codes() -> dict[str, int]:
    return dict(StatusMinute.objects.values_list("code").annotate(n=Sum("count")))


def test_the_rollup_counts_what_the_history_holds(history):
    rollup.refresh(history["now"])
    events = dict(MessageEvent.objects.values_list("status_code").annotate(n=Count("id")))
    assert {k: v for k, v in _rolled_codes().items() if k != ACCEPTED} == events
    assert _rolled_codes()[ACCEPTED] == Message.objects.count() == 11
    assert LatencyMinute.objects.aggregate(n=Sum("count"))["n"] == events["DELIVERED"] == 7
    assert WebhookMinute.objects.aggregate(ok=Sum("succeeded"), bad=Sum("failed")) == {"ok": 4, "bad": 2}
    per_minute = StatusMinute.objects.filter(code="DELIVERED", channel=history["sms"]).values_list("minute", "count")
    assert sum(n for _, n in per_minute) == 4 and all(m.second == 0 for m, _ in per_minute)


def test_latency_buckets_give_each_channels_median(history):
    rollup.refresh(history["now"])
    buckets = {}
    for row in queries.latency_buckets(history["now"]):
        buckets.setdefault(row["channel_id"], {})[row["bucket"]] = row["n"]
    assert 2 < queries.median_seconds(buckets[history["sms"].pk]) <= 5  # 2.2 s, in the (2, 5] bucket
    assert 10 < queries.median_seconds(buckets[history["email"].pk]) <= 30
    assert queries.median_seconds({}) is None


def test_a_refresh_is_idempotent(history):
    rollup.refresh(history["now"])
    first = sorted(StatusMinute.objects.values_list("minute", "channel_id", "code", "count"))
    rollup.refresh(history["now"])
    rollup.refresh(history["now"], since=history["now"] - timedelta(hours=6))
    assert sorted(StatusMinute.objects.values_list("minute", "channel_id", "code", "count")) == first


def test_a_refresh_rolls_the_trailing_minutes_again_to_count_late_commits(history, settings):
    settings.CONSOLE_REROLL_MINUTES = 5
    now = history["now"]
    rollup.refresh(now)
    before = _rolled_codes()
    # Committed after that refresh, but stamped within the re-rolled minutes: counted next time.
    late = _message(history["app"], history["sms"], now - timedelta(minutes=3), [("QUEUED", 0)])
    # Stamped before the window: a refresh does not go that far back.
    _message(history["app"], history["sms"], now - timedelta(minutes=20), [("QUEUED", 0)])
    # A page re-rolls less (the last minute only): the task's next run counts the late one.
    rollup.refresh(now + timedelta(seconds=10), reroll_minutes=rollup.PAGE_REROLL_MINUTES)
    assert _rolled_codes()[ACCEPTED] == before[ACCEPTED]
    start, _ = rollup.refresh(now + timedelta(seconds=30))
    assert start <= late.created_at
    assert _rolled_codes()[ACCEPTED] == before[ACCEPTED] + 1
    assert _rolled_codes()["QUEUED"] == before["QUEUED"] + 1


def test_a_page_rolls_what_came_since_the_last_refresh(admin_client, history):
    rollup.refresh(history["now"] - timedelta(minutes=30))
    assert _rolled_codes()[ACCEPTED] == 9  # not yet the two accepted in the last ten minutes
    admin_client.get("/admin/console/")
    assert _rolled_codes()[ACCEPTED] == 11


def test_prune_drops_what_the_rollup_no_longer_keeps(history, settings):
    rollup.refresh(history["now"])
    settings.CONSOLE_ROLLUP_HOURS = 1
    assert rollup.prune(history["now"]) > 0
    assert not StatusMinute.objects.filter(minute__lt=history["now"] - timedelta(hours=1)).exists()


def test_the_console_is_for_staff_only(client, db):
    assert client.get("/admin/console/").status_code == 302
    user = get_user_model().objects.create_user("ann", password="pw")
    client.force_login(user)
    assert client.get("/admin/console/")["Location"].startswith("/admin/login/")
    user.is_staff = True
    user.save()
    assert client.get("/admin/console/").status_code == 200


def test_the_admin_index_links_to_the_console(admin_client):
    assert 'href="/admin/console/"' in admin_client.get("/admin/").content.decode()


def _page_queries(admin_client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert admin_client.get("/admin/console/").status_code == 200
    return len(captured)


def _busy_channel(name: str, now) -> None:
    app = Application.objects.create(name=name)
    Subscription.objects.create(application=app, url=f"https://hooks.example.com/{name}", secret="s")
    channel = Channel.objects.create(name=name, type="simulator")
    _message(app, channel, now - timedelta(minutes=1), [("QUEUED", 0), ("SENT", 0.1), ("DELIVERED", 1)])


def test_the_page_makes_as_many_queries_whatever_the_number_of_channels_and_subscriptions(admin_client, history):
    _busy_channel("first", history["now"])
    _page_queries(admin_client)  # the first page makes the rollup's mark
    few = _page_queries(admin_client)
    for i in range(5):
        _busy_channel(f"more{i}", history["now"])
    assert _page_queries(admin_client) == few <= 25


def test_the_page_shows_counts_channels_subscriptions_backlog_and_chart(admin_client, history):
    html = admin_client.get("/admin/console/").content.decode()
    assert '<tr data-code="ACCEPTED"><td>ACCEPTED</td><td class="n">8</td><td class="n">11</td>' in html
    assert '<tr data-code="DELIVERED"><td>DELIVERED</td><td class="n">4</td><td class="n">7</td>' in html
    # sms: 6 accepted in the day (+2 waiting), 4 delivered, 2 failed: 66.7 %; email: 100 %.
    assert '<td>sms</td><td class="n">8</td><td class="n">4</td><td class="n">2</td><td class="n">66.7 %</td>' in html
    assert '<td>email</td><td class="n">3</td><td class="n">3</td><td class="n">0</td><td class="n">100.0 %</td>' in html
    assert html.count("<polyline") == 3 and "Messages per minute" in html
    for text in ("state-healthy", "state-failing", "state-disabled", "failing for 20 min",
                 "The endpoint answered 410 Gone", "66.7 %", "30 min"):
        assert text in html, text


def test_subscriptions_that_need_an_operator_come_first_and_the_list_is_capped(admin_client, history,
                                                                             monkeypatch):
    monkeypatch.setattr(queries, "SUBSCRIPTIONS_SHOWN", 2)
    html = admin_client.get("/admin/console/").content.decode()
    shown = re.findall(r'<tr data-subscription="(\w+)">', html)
    gone = Subscription.objects.get(url="https://hooks.example.com/gone")
    assert shown == [gone.id, history["failing"].id]  # disabled, then failing; the healthy one is left out
    assert "1 more in" in html and "/admin/deliveries/subscription/" in html


def test_the_backlog_counts_due_work_and_sent_messages(history):
    now = history["now"]
    backlog = {b.label: b for b in queries.message_backlog(now)}
    assert backlog["QUEUED due"].count == 1 and backlog["QUEUED due"].oldest == now - timedelta(minutes=2)
    sent = queries.sent_backlog()
    assert (sent.count, sent.oldest) == (1, now - timedelta(minutes=10))
    assert backlog["SCHEDULED due"].count == backlog["DELIVERY_RETRIED due"].count == 0
    deliveries = queries.delivery_backlog(now)
    assert (deliveries.count, deliveries.oldest) == (1, now - timedelta(seconds=30))


def test_the_rollup_is_refreshed_by_beat_on_the_sweeps_queue(settings):
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "console.refresh_rollup")
    assert entry["schedule"] > 0
    assert settings.CELERY_TASK_ROUTES["console.refresh_rollup"] == {"queue": "sweeps"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="seedhistory generates rows on PostgreSQL")
def test_seedhistory_fills_a_day_and_rolls_it_up(db):
    from django.core.management import call_command

    call_command("seedhistory", messages=3000)
    assert Message.objects.count() == 3000
    events = dict(MessageEvent.objects.values_list("status_code").annotate(n=Count("id")))
    assert {k: v for k, v in _rolled_codes().items() if k != ACCEPTED} == events
    assert {"DELIVERED", "DELIVERY_FAILED", "SENT", "QUEUED", "READ"} <= set(events)
    assert DeliveryAttempt.objects.exists() and Subscription.objects.filter(active=False).exists()


def test_the_task_refreshes_and_prunes(history, settings):
    from console.tasks import refresh_rollup

    StatusMinute.objects.create(minute=history["now"] - timedelta(days=3), channel=history["sms"],
                                code=ACCEPTED, count=1)
    refresh_rollup()
    assert _rolled_codes()[ACCEPTED] == 11  # today's, without the pruned one of three days ago


def test_the_chart_puts_each_minute_in_its_place():
    from console import chart

    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    drawn = chart.draw([(minute, "A", 10), (minute - timedelta(minutes=1439), "A", 4),
                        (minute - timedelta(days=2), "A", 99)], now, [("A", "Accepted", "accepted")])
    points = drawn.series[0].points.split()
    assert len(points) == 1440 and drawn.series[0].total == 14  # the one two days ago is left out
    assert points[-1] == f"{chart.WIDTH - chart.RIGHT:.1f},{chart.TOP:.1f}"  # the peak, 10, tops the axis
    assert points[0].startswith(f"{chart.LEFT:.1f},")
    assert [t.label for t in drawn.y_ticks] == ["0", "2", "4", "6", "8", "10"]
