"""A task that meets a lost database or broker is retried later with one warning line, not a
traceback; a bug (ProgrammingError) still fails loudly."""

import logging

import pytest
from celery.exceptions import Retry
from django.db import OperationalError, ProgrammingError
from kombu.exceptions import OperationalError as KombuOperationalError

from comms import sending, sweeper, tasks
from comms.outages import OutageTolerantTask
from config.celery import app
from deliveries import tasks as delivery_tasks

LOST = OperationalError("server closed the connection unexpectedly\n\tThis probably means the server terminated")


def raising(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


@pytest.fixture
def retries(monkeypatch):
    """The retries a task asks for, instead of publishing them."""
    asked = []

    def retry(**options):
        asked.append(options)
        return Retry(f"Retry in {options['countdown']}s", when=options["countdown"])

    monkeypatch.setattr(tasks.send_messages, "retry", retry)
    return asked


def warnings_in(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "comms.outages"]


def test_a_lost_database_is_retried_in_5_s_with_one_warning_line_and_no_traceback(monkeypatch, retries, caplog):
    monkeypatch.setattr(sending, "send_attempts", raising(LOST))

    with caplog.at_level(logging.WARNING):
        result = tasks.send_messages.apply(args=[["m1"]])

    assert result.state == "RETRY"
    assert retries == [{"countdown": 5, "max_retries": 20}]
    (line,) = warnings_in(caplog)
    assert line.exc_info is None
    assert "comms.send_messages met an outage (OperationalError: server closed the connection unexpectedly)" \
        in line.getMessage()


@pytest.mark.parametrize("retried, countdown", [(1, 10), (3, 40), (4, 60), (19, 60)])
def test_the_countdown_doubles_up_to_a_minute(monkeypatch, retries, retried, countdown):
    monkeypatch.setattr(sending, "send_attempts", raising(LOST))

    tasks.send_messages.apply(args=[["m1"]], retries=retried)

    assert retries[0]["countdown"] == countdown


def test_after_20_retries_the_task_gives_up_with_one_error_line_and_leaves_the_work_to_the_sweeper(
        monkeypatch, retries, caplog):
    monkeypatch.setattr(sending, "send_attempts", raising(LOST))

    result = tasks.send_messages.apply(args=[["m1"]], retries=20)

    assert (result.state, retries) == ("SUCCESS", [])
    (line,) = warnings_in(caplog)
    assert line.levelno == logging.ERROR and "waits for the sweeper" in line.getMessage()


def test_a_retry_the_broker_cannot_take_leaves_the_work_in_the_database(monkeypatch, caplog):
    monkeypatch.setattr(sending, "send_attempts", raising(LOST))
    monkeypatch.setattr(tasks.send_messages, "retry", raising(KombuOperationalError("Connection refused")))

    result = tasks.send_messages.apply(args=[["m1"]])

    assert result.state == "SUCCESS"
    assert [r.getMessage() for r in warnings_in(caplog)][-1] == (
        "comms.send_messages could not be queued again (OperationalError: Connection refused); "
        "its work waits for the sweeper")


def test_a_sweep_that_meets_an_outage_is_not_retried_beat_runs_it_again(monkeypatch, caplog):
    monkeypatch.setattr(sweeper, "sweep_due_work", raising(LOST))
    monkeypatch.setattr(tasks.sweep, "retry", raising(AssertionError("a sweep is not retried")))

    result = tasks.sweep.apply()

    assert result.state == "SUCCESS"
    assert "the next run picks its work up" in warnings_in(caplog)[0].getMessage()


def test_a_bug_is_not_an_outage_it_fails_with_its_traceback(monkeypatch, retries):
    monkeypatch.setattr(sending, "send_attempts", raising(ProgrammingError("column x does not exist")))

    result = tasks.send_messages.apply(args=[["m1"]])

    assert result.state == "FAILURE" and retries == []


def test_every_task_of_comms_and_deliveries_rides_out_outages_but_the_benchmarks_noop():
    ours = {name: task for name, task in app.tasks.items() if name.startswith(("comms.", "deliveries."))}

    assert {name for name, task in ours.items() if not isinstance(task, OutageTolerantTask)} == {"comms.noop"}
    assert delivery_tasks.sweep.retry_on_outage is False and tasks.sweep.retry_on_outage is False

