"""A day of history, fast, on PostgreSQL: `manage.py seedhistory` (for the console's proof).

Everything is made in the database with INSERT ... SELECT over generate_series: a message per
row, spread evenly over the last 24 hours, its kind (delivered, read, retried, failed, silent,
scheduled, cancelled, stalled) drawn from a hash of its number, its events the steps of its kind
that have already happened, its status the last of them (the traffic swells and ebbs over the
day, busiest around midday UTC); then the webhook deliveries of three
subscriptions (healthy, failing for the last 40 minutes, disabled 3 hours ago) and their attempts.
"""

from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction

from comms.models import Application, Channel
from deliveries.models import Subscription
from deliveries.signing import new_secret

CHANNELS = [("seed-sms", 4.0), ("seed-email", 1.0), ("seed-whatsapp", 8.0), ("seed-push", 0.5)]  # median latency, s
APPLICATIONS = ["seed-shop", "seed-bank", "seed-news"]
OUTCOMES = ["DELIVERED", "DELIVERY_FAILED"]

# kind, sequence, status code, seconds after acceptance, + this many latencies, attempt, error
STEPS = """(VALUES
 ('ok',1,'QUEUED',0,0,0,''), ('ok',2,'SENT',0.2,0,1,''), ('ok',3,'DELIVERED',0.2,1,1,''),
 ('read',1,'QUEUED',0,0,0,''), ('read',2,'SENT',0.2,0,1,''), ('read',3,'DELIVERED',0.2,1,1,''),
 ('read',4,'READ',60.2,1,1,''),
 ('retry',1,'QUEUED',0,0,0,''), ('retry',2,'SENT',0.2,0,1,''),
 ('retry',3,'DELIVERY_RETRIED',0.2,1,1,'CHANNEL_UNKNOWN_ERROR'), ('retry',4,'SENT',30.2,1,2,''),
 ('retry',5,'DELIVERED',30.2,2,2,''),
 ('fail',1,'QUEUED',0,0,0,''), ('fail',2,'SENT',0.2,0,1,''),
 ('fail',3,'DELIVERY_FAILED',0.2,1,1,'REJECTED_BY_CHANNEL'),
 ('silent',1,'QUEUED',0,0,0,''), ('silent',2,'SENT',0.2,0,1,''),
 ('sched',1,'SCHEDULED',0,0,0,''),
 ('cancel',1,'SCHEDULED',0,0,0,''), ('cancel',2,'CANCELLED',45,0,0,''),
 ('stalled',1,'QUEUED',0,0,0,'')
) AS st(kind, seq, code, secs, lats, attempt, error)"""

SEED = """
CREATE TEMP TABLE seed ON COMMIT DROP AS
SELECT md5(%(tag)s || g) AS id, ts, channels[1 + c] AS channel_id, apps[1 + g %% 3] AS application_id,
       medians[1 + c] * (0.4 + (abs(hashtext('l' || %(tag)s || g)) %% 1000) / 400.0) AS lat,
       CASE WHEN r < 120 THEN 'read' WHEN r < 820 THEN 'ok' WHEN r < 880 THEN 'retry'
            WHEN r < 940 THEN 'fail' WHEN r < 945 THEN 'silent' WHEN r < 960 THEN 'sched'
            WHEN r < 970 THEN 'cancel'
            WHEN r < 975 AND ts > %(now)s - interval '4 minutes' THEN 'stalled' ELSE 'ok' END AS kind
FROM (SELECT g, %(now)s - interval '24 hours' + interval '86400 seconds' * (u - %(swing)s / (2 * pi())
             * (sin(2 * pi() * (u - %(peak)s)) + sin(2 * pi() * %(peak)s))) AS ts,
             abs(hashtext(%(tag)s || g)) %% 1000 AS r,
             CASE WHEN abs(hashtext('c' || %(tag)s || g)) %% 100 < 45 THEN 0
                  WHEN abs(hashtext('c' || %(tag)s || g)) %% 100 < 75 THEN 1
                  WHEN abs(hashtext('c' || %(tag)s || g)) %% 100 < 90 THEN 2 ELSE 3 END AS c
      FROM (SELECT g, (g - 0.5)::float8 / %(n)s AS u FROM generate_series(1, %(n)s) g) AS spread) AS numbered,
     (SELECT %(channels)s::bigint[] AS channels, %(apps)s::bigint[] AS apps,
             %(medians)s::float8[] AS medians) AS k
"""

EVENTS = f"""
CREATE TEMP TABLE seed_event ON COMMIT DROP AS
SELECT md5(s.id || st.seq) AS id, s.id AS message_id, s.application_id, st.seq, st.code, st.attempt,
       st.error, s.ts + make_interval(secs => st.secs + st.lats * s.lat) AS at
FROM seed s JOIN {STEPS} ON st.kind = s.kind
WHERE s.ts + make_interval(secs => st.secs + st.lats * s.lat) <= %(now)s
"""

MESSAGES = """
INSERT INTO comms_message (id, sender, receiver, content, context, status, attempts, event_seq, send_at,
    expires_at, provider_ref, due_at, created_at, updated_at, application_id, channel_id)
SELECT s.id, '', '+4477009' || lpad((abs(hashtext(s.id)) %% 1000000)::text, 6, '0'),
       '{"text": "Your code is 4711"}', '{"seed": true}', last.code, last.attempt, last.seq,
       CASE WHEN s.kind IN ('sched', 'cancel') THEN s.ts + interval '36 hours' END, NULL,
       CASE WHEN last.attempt > 0 THEN 'sim-' || s.id ELSE '' END,
       CASE last.code WHEN 'QUEUED' THEN s.ts
            WHEN 'DELIVERY_RETRIED' THEN last.at + interval '30 seconds'
            WHEN 'SCHEDULED' THEN s.ts + interval '36 hours' - interval '120 seconds' END,
       s.ts, last.at, s.application_id, s.channel_id
FROM seed s JOIN (SELECT DISTINCT ON (message_id) * FROM seed_event ORDER BY message_id, seq DESC) last
  ON last.message_id = s.id
ORDER BY s.ts
"""

EVENT_ROWS = """
INSERT INTO comms_messageevent (id, message_id, sequence, status_code, error_code, error_message, raw_code,
    fallback_to, attempt, env, link, created_at)
SELECT id, message_id, seq, code, error, CASE WHEN error = '' THEN '' ELSE 'Seeded failure' END, '', '',
       attempt, NULL, '', at
FROM seed_event ORDER BY at
"""

# A subscription's deliveries: succeeded before `trouble`, then (failing) pending or (disabled)
# failed until `until`; nothing after `until` (a disabled subscription gets no more).
DELIVERIES = """
INSERT INTO deliveries_delivery (id, subscription_id, event_id, status, attempts, due_at, last_status_code,
    last_error, created_at, updated_at)
SELECT md5(e.id || %(sub)s), %(sub)s, e.id,
       CASE WHEN e.at < %(trouble)s THEN 'succeeded' ELSE %(trouble_status)s END,
       CASE WHEN e.at < %(trouble)s THEN 1 ELSE %(trouble_attempts)s END,
       CASE WHEN e.at < %(trouble)s OR %(trouble_status)s <> 'pending' THEN NULL
            WHEN abs(hashtext(e.id)) %% 10 = 0 THEN %(now)s - interval '20 seconds'
            ELSE %(now)s + interval '5 minutes' END,
       CASE WHEN e.at < %(trouble)s THEN 200 ELSE 503 END,
       CASE WHEN e.at < %(trouble)s THEN '' ELSE 'HTTP 503' END, e.at, e.at
FROM seed_event e
WHERE e.application_id = %(app)s AND (%(codes)s::text[] IS NULL OR e.code = ANY(%(codes)s::text[]))
  AND e.at < %(until)s
ORDER BY e.at
"""

ATTEMPTS = """
INSERT INTO deliveries_deliveryattempt (delivery_id, number, attempted_at, status_code, duration_ms,
    response_excerpt, error_kind, error_detail, probe)
SELECT d.id, n, d.created_at + (n - 1) * interval '5 minutes' + interval '50 milliseconds',
       d.last_status_code, 40 + abs(hashtext(d.id)) %% 200, '',
       CASE WHEN d.last_status_code = 200 THEN '' ELSE 'http_status' END, '', false
FROM deliveries_delivery d, generate_series(1, d.attempts) n
WHERE d.subscription_id = %(sub)s
  AND d.created_at + (n - 1) * interval '5 minutes' + interval '50 milliseconds' <= %(now)s
ORDER BY 3
"""


def setup(now: datetime) -> tuple[list[Channel], list[Application], list[Subscription]]:
    """The seeded channels, applications and subscriptions (made once, reused by later runs)."""
    channels = [Channel.objects.get_or_create(name=name, defaults={"type": "simulator"})[0]
                for name, _ in CHANNELS]
    apps = [Application.objects.get_or_create(name=name)[0] for name in APPLICATIONS]
    troubles = [{}, {"failing_since": now - timedelta(minutes=40)},
                {"active": False, "disabled_at": now - timedelta(hours=3),
                 "failing_since": now - timedelta(hours=5),
                 "disabled_reason": "Every delivery failed for 5 days"}]
    subs = []
    for app, trouble in zip(apps, troubles, strict=True):
        sub, _ = Subscription.objects.update_or_create(
            application=app, url=f"https://hooks.example.com/{app.name}",
            defaults={"events": [] if not trouble else OUTCOMES, "secret": new_secret(), **trouble})
        subs.append(sub)
    return channels, apps, subs


def seed(n: int, now: datetime, tag: str) -> dict[str, int]:
    """Insert `n` messages with their history; returns the rows made per table."""
    channels, apps, subs = setup(now)
    made = {}
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        _skip_foreign_key_checks(cursor)
        cursor.execute(SEED, {"tag": tag, "now": now, "n": n, "peak": _peak(now), "swing": 0.45,
                              "channels": [c.pk for c in channels],
                              "apps": [a.pk for a in apps], "medians": [m for _, m in CHANNELS]})
        cursor.execute(EVENTS, {"now": now})
        for name, sql in (("messages", MESSAGES), ("events", EVENT_ROWS)):
            cursor.execute(sql, {})
            made[name] = cursor.rowcount
        made["deliveries"] = made["attempts"] = 0
        for app, sub in zip(apps, subs, strict=True):
            cursor.execute(DELIVERIES, _delivery_params(app, sub, now))
            made["deliveries"] += cursor.rowcount
            cursor.execute(ATTEMPTS, {"sub": sub.pk, "now": now})
            made["attempts"] += cursor.rowcount
    return made


def _peak(now: datetime) -> float:
    """Where in the seeded day (0 to 1) the traffic swells most: early afternoon UTC (the warp
    of the time axis moves the crest to about midday)."""
    start = now - timedelta(days=1)
    return ((14 - start.hour - start.minute / 60) % 24) / 24


def _skip_foreign_key_checks(cursor) -> None:
    """The rows reference each other correctly by construction; checking millions of foreign
    keys at COMMIT (Django's are deferred) takes longer than making the rows. Only a superuser
    may turn the checks off: anyone else waits for them."""
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        pass


def _delivery_params(app: Application, sub: Subscription, now: datetime) -> dict:
    trouble = sub.failing_since or now + timedelta(days=1)
    return {"sub": sub.pk, "app": app.pk, "now": now, "codes": sub.events or None, "trouble": trouble,
            "trouble_status": "failed" if sub.disabled_at else "pending",
            "trouble_attempts": 8 if sub.disabled_at else 2,
            "until": sub.disabled_at or now + timedelta(days=1)}


def vacuum() -> None:
    """What autovacuum does over a day of inserts, at once: statistics, the visibility map
    (index-only scans) and the BRIN summaries (console's time-range scans)."""
    # VACUUM cannot run in a transaction (a test's): there, statistics only.
    command = "ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE"
    with connection.cursor() as cursor:
        for table in ("comms_message", "comms_messageevent", "deliveries_delivery", "deliveries_deliveryattempt"):
            cursor.execute(f"{command} {table}")
