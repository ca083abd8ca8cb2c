"""Fault suite: Relay's reliability rules checked against real failures (not pytest).

    .ci/faults                      # what CI runs
    .venv/bin/python -m tests.faults [CASE ...] [--keep-logs]

It needs root (it creates a PostgreSQL cluster with pg_createcluster) and touches nothing
of the machine's own servers: it starts a throwaway PostgreSQL cluster and redis-server on
spare ports, migrates, starts the Procfile's web, worker-send, worker-receipts,
worker-webhooks, worker-sweeps and beat against them (DEBUG off, sweeps every 2 s, short
webhook retries), and a local receiver that verifies every webhook. Then, each with its own
application and subscription:

    smoke     20 messages, nothing broken
    kill      worker-send SIGKILLed (process group) with 300 messages streaming in, restarted
    flush     FLUSHALL on the broker with 200 messages' tasks queued
    postgres  PostgreSQL stopped for 5 s while 240 messages are submitted and processed;
              the API must answer 503 {"code": "unavailable"} with Retry-After, never 500
    redis     Redis stopped for 5 s (it comes back empty) with 240 messages in flight
    receiver  the webhook receiver's port closed for 10 s while 150 messages move
    hanging   one application's endpoint accepts and never answers; another application's
              subscription must keep getting its webhooks promptly

Every case checks: all messages DELIVERED, none sent twice (one SENT per attempt), every
timeline QUEUED, SENT, DELIVERED, every webhook received (by webhook-id) at each healthy
subscription, and every platform process still running (after an outage, a process that
died is a FAIL of its own; it is started again, as a supervisor would, so the rest of the
case still says whether the work recovers). One PASS/FAIL line per check with figures,
then a SUMMARY; the exit status is 1 on any failure. Logs are kept (path printed) when
something failed. Files here are not named test_*, so pytest never collects them.
"""
