"""The API's side of comms.quotas: a refusal becomes 429 with Retry-After and the API's
error shape (`rate_limited`, `quota_exceeded`, made by errors.exception_handler)."""

from collections.abc import Iterator
from contextlib import contextmanager

from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from .. import quotas, selectors
from ..models import Application

# Not a word of rest_framework.views here (nor of .errors, which imports it): APIView reads
# DEFAULT_THROTTLE_CLASSES as its class is made, so this module may be imported first.


class TooManyRequests(exceptions.APIException):
    """429; DRF's exception handler sets Retry-After from `wait`."""

    status_code = 429
    default_code = "rate_limited"

    def __init__(self, message: str, code: str, retry_after: int):
        super().__init__(message, code)
        self.wait = retry_after


class ApplicationRequestRate(BaseThrottle):
    """Every authenticated request counts against its application's requests per minute.
    DRF runs throttles after authentication and permissions, so a 401 or 403 costs nothing."""

    def allow_request(self, request, view) -> bool:
        if isinstance(request.user, Application):
            try:
                quotas.check_request_rate(request.user)
            except quotas.RateLimited as refusal:
                raise TooManyRequests(str(refusal), "rate_limited", refusal.retry_after) from None
        return True


@contextmanager
def daily_quota(application: Application, count: int, *,
                idempotency_key: str | None = None) -> Iterator[quotas.Spent]:
    """Take `count` messages from the application's daily quota for the block inside, which
    gives them back if it raises (or by Spent.give_back() if it created nothing). Call it
    after validation (a bad request is a 400, not a 429) and before anything is written.

    A replay of an Idempotency-Key already used is answered with its first result even when
    today's quota is spent: it accepts nothing new."""
    try:
        spent = quotas.take_messages(application, count)
    except quotas.QuotaExceeded as refusal:
        if not (idempotency_key and _replay(application, idempotency_key)):
            raise TooManyRequests(str(refusal), "quota_exceeded", refusal.retry_after) from None
        spent = quotas.Spent()
    with spent:
        yield spent


def _replay(application: Application, idempotency_key: str) -> bool:
    return selectors.messages_of(application).filter(idempotency_key=idempotency_key).exists()
