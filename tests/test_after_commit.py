"""Publishing after commit: an outage there is one warning line (the committed rows are the
sweeper's to publish); a bug keeps its traceback and still fails nothing."""

import logging

import pytest
from django.db import ProgrammingError
from kombu.exceptions import OperationalError as KombuOperationalError

from comms.outages import after_commit

pytestmark = pytest.mark.django_db


def raising(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


def test_a_publish_after_commit_that_meets_an_outage_is_one_warning_and_fails_nothing(
        django_capture_on_commit_callbacks, caplog):
    with django_capture_on_commit_callbacks(execute=True):
        after_commit(raising(KombuOperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")))

    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        ("WARNING", "publishing after commit met an outage (OperationalError: Error 111 connecting to "
                    "127.0.0.1:6379. Connection refused.); the sweeper picks the work up", None)]


def test_a_bug_in_a_publish_after_commit_is_logged_with_its_traceback(django_capture_on_commit_callbacks, caplog):
    with django_capture_on_commit_callbacks(execute=True):
        after_commit(raising(ProgrammingError("column x does not exist")))

    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None
