"""GET /metrics, Prometheus's scrape: off (404) unless METRICS_TOKEN is set, and then only
for `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise). Not part of the /api/v1
contract, so not in its schema."""

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from comms import backlog as message_backlog
from comms import metrics
from deliveries import backlog as delivery_backlog


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off: METRICS_TOKEN is not set")
    if not _bearer_matches(request.headers.get("Authorization", ""), token):
        return HttpResponse("401 a valid bearer token is required\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = metrics.exposition([message_backlog.readings, delivery_backlog.readings])
    return HttpResponse(body, content_type=content_type)


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    # Constant time: how much of a guess matched must not show in the answer's timing.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
