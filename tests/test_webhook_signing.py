"""Webhook signatures: Standard Webhooks, verified with the official library, across rotations."""

import base64
import hashlib
import hmac
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from comms.submission import message_submit
from deliveries.models import Delivery
from deliveries.sending import send_deliveries
from deliveries.services import subscription_create, subscription_rotate_secret
from deliveries.signing import new_secret


@pytest.fixture(autouse=True)
def _local_receivers_allowed(settings, published):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_ROTATION_OVERLAP_HOURS = 24


@pytest.fixture
def subscription(application, receiver):
    return subscription_create(application=application, url=receiver.url)


def post_one_event(receiver, application, channel):
    """Submit a message and send its QUEUED webhook; return the request the receiver got."""
    message_submit(application=application, data={
        "channel": channel, "receiver": "+447700900123", "content": {"text": "hi"}})
    send_deliveries(list(Delivery.objects.filter(status="pending").values_list("id", flat=True)))
    (request,) = receiver.requests
    return request


def signatures(request) -> list[str]:
    return request.headers["webhook-signature"].split(" ")


@pytest.fixture
def in_window(subscription):
    """Rotated just now: the old secret still signs."""
    old = subscription.secret
    return old, subscription_rotate_secret(subscription=subscription).secret


@pytest.fixture
def after_window(subscription):
    """Rotated a minute more than the overlap ago: only the new secret signs."""
    old = subscription.secret
    rotated_at = timezone.now() - timedelta(hours=24, minutes=1)
    return old, subscription_rotate_secret(subscription=subscription, now=rotated_at).secret


# --- secrets ------------------------------------------------------------------------------


def test_a_new_secret_is_whsec_and_base64_of_24_to_64_random_bytes():
    secret = new_secret()

    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 64


def test_every_subscription_gets_its_own_secret(application):
    first = subscription_create(application=application, url="http://127.0.0.1:9/a")
    second = subscription_create(application=application, url="http://127.0.0.1:9/a")

    assert first.secret != second.secret
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+=*", first.secret)


def test_rotation_makes_a_new_secret_in_the_same_format(subscription):
    old = subscription.secret

    rotated = subscription_rotate_secret(subscription=subscription)

    assert rotated.secret != old
    assert 24 <= len(base64.b64decode(rotated.secret.removeprefix("whsec_"), validate=True)) <= 64


def test_rotation_keeps_the_old_secret_for_the_configured_overlap(settings, subscription):
    settings.WEBHOOK_ROTATION_OVERLAP_HOURS = 2
    old, now = subscription.secret, timezone.now()

    subscription_rotate_secret(subscription=subscription, now=now)

    subscription.refresh_from_db()
    assert subscription.previous_secret == old
    assert subscription.previous_secret_expires_at == now + timedelta(hours=2)


# --- signatures ---------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body(receiver, application, channel, subscription):
    request = post_one_event(receiver, application, channel)

    key = base64.b64decode(subscription.secret.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert signatures(request) == [f"v1,{expected}"]


def test_a_request_verifies_with_the_official_library(receiver, application, channel, subscription):
    request = post_one_event(receiver, application, channel)

    assert Webhook(subscription.secret).verify(request.body, request.headers)["statusCode"] == "QUEUED"


def test_a_request_does_not_verify_with_another_secret(receiver, application, channel, subscription):
    request = post_one_event(receiver, application, channel)

    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


def test_during_the_rotation_window_a_request_carries_two_signatures(receiver, application, channel,
                                                                     in_window):
    request = post_one_event(receiver, application, channel)

    assert len(signatures(request)) == 2
    assert all(s.startswith("v1,") for s in signatures(request))


def test_during_the_rotation_window_the_old_secret_verifies(receiver, application, channel, in_window):
    old, _ = in_window

    request = post_one_event(receiver, application, channel)

    assert Webhook(old).verify(request.body, request.headers)["id"] == request.headers["webhook-id"]


def test_during_the_rotation_window_the_new_secret_verifies(receiver, application, channel, in_window):
    _, new = in_window

    request = post_one_event(receiver, application, channel)

    assert Webhook(new).verify(request.body, request.headers)["id"] == request.headers["webhook-id"]


def test_after_the_overlap_a_request_carries_one_signature(receiver, application, channel, after_window):
    request = post_one_event(receiver, application, channel)

    assert len(signatures(request)) == 1


def test_after_the_overlap_the_new_secret_verifies(receiver, application, channel, after_window):
    _, new = after_window

    request = post_one_event(receiver, application, channel)

    assert Webhook(new).verify(request.body, request.headers)["id"] == request.headers["webhook-id"]


def test_after_the_overlap_the_old_secret_no_longer_verifies(receiver, application, channel, after_window):
    old, _ = after_window

    request = post_one_event(receiver, application, channel)

    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, request.headers)
