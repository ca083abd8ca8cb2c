"""The `twilio` channel: the official SDK against an injected HTTP double that answers as
Twilio's API does, and status callbacks signed with the SDK's RequestValidator, as Twilio signs."""

import json
from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator

from comms import receipts
from comms.accounts import channel_upsert
from comms.providers import ConfigError, ProviderError
from comms.providers.twilio_sms import TwilioProvider
from comms.status import ErrorCode, Status
from tests.test_sending import Relay, codes, fresh

pytestmark = pytest.mark.django_db

ACCOUNT = "AC" + "0" * 32
TOKEN = "twilio-auth-token-0123456789"
PUBLIC = "https://relay.example.com"


class TwilioDouble(HttpClient):
    """Answers the SDK's requests from a script of (status, body); records each request."""

    def __init__(self):
        super().__init__(logger=None, is_async=False)
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []
        self.created = 0

    def request(self, method, uri, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        self.requests.append({"method": method, "uri": uri, "data": dict(data or {}), "auth": auth})
        if self.answers:
            status, body = self.answers.pop(0)
        else:
            self.created += 1
            status, body = 201, {"sid": f"SM{self.created:032d}", "status": "queued", "account_sid": ACCOUNT}
        return Response(status, json.dumps(body))


@pytest.fixture
def twilio(monkeypatch, settings):
    settings.RELAY_PUBLIC_URL = PUBLIC
    double = TwilioDouble()
    monkeypatch.setattr(TwilioProvider, "http_client", double)
    return double


def twilio_channel(name="sms", **extra):
    config = {"accountSid": ACCOUNT, "authToken": TOKEN, "from": "+15005550006", **extra}
    return channel_upsert(name=name, type="twilio", config=config, max_attempts=3, retry_delay=1)[0]


@pytest.fixture
def relay(application, published, django_capture_on_commit_callbacks):
    return Relay(application, published, django_capture_on_commit_callbacks)


def callback(channel, sid, status, *, error_code=None, token=TOKEN, url=None):
    """POST a status callback as Twilio would: form-encoded, signed over the public URL."""
    params = {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": status, "To": "+447700900123"}
    if error_code:
        params["ErrorCode"] = str(error_code)
    url = url or f"{PUBLIC}/api/v1/receipts/{channel.name}"
    signature = RequestValidator(token).compute_signature(url, params)
    return APIClient().post(f"/api/v1/receipts/{channel.name}", data=urlencode(params),
                            content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature)


# --- sending -------------------------------------------------------------------------------


def test_a_message_is_created_with_its_status_callback_under_the_public_url(relay, twilio):
    channel = twilio_channel()

    message = relay.submit(channel, "+447700900123")
    relay.attempt(message)

    (sent,) = twilio.requests
    assert sent["uri"] == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert sent["data"] == {"To": "+447700900123", "From": "+15005550006", "Body": "Hello",
                            "StatusCallback": f"{PUBLIC}/api/v1/receipts/sms"}
    assert sent["auth"] == (ACCOUNT, TOKEN)
    assert (fresh(message).status, fresh(message).provider_ref) == (Status.SENT, "SM" + "1".zfill(32))


def test_whatsapp_numbers_get_their_prefix_and_a_messaging_service_replaces_from(relay, twilio):
    channel = twilio_channel(whatsapp=True, **{"from": None, "messagingServiceSid": "MG" + "1" * 32})

    relay.attempt(relay.submit(channel, "+447700900123"))

    assert twilio.requests[0]["data"]["To"] == "whatsapp:+447700900123"
    assert twilio.requests[0]["data"]["MessagingServiceSid"] == "MG" + "1" * 32


def test_api_base_url_points_the_sdk_elsewhere(relay, twilio):
    channel = twilio_channel(apiBaseUrl="http://127.0.0.1:9999/twilio")

    relay.attempt(relay.submit(channel, "+447700900123"))

    assert twilio.requests[0]["uri"] == f"http://127.0.0.1:9999/twilio/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


@pytest.mark.parametrize(("status", "body", "code", "permanent"), [
    (400, {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400},
     ErrorCode.INVALID_RECEIVER, True),
    (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400},
     ErrorCode.REJECTED_BY_CHANNEL, True),
    (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, ErrorCode.RATE_LIMITED, False),
    (429, {"message": "Too Many Requests", "status": 429}, ErrorCode.RATE_LIMITED, False),
    (500, {"message": "Internal error", "status": 500}, ErrorCode.CHANNEL_UNKNOWN_ERROR, False),
])
def test_send_time_errors_map_by_table(twilio, application, status, body, code, permanent):
    from comms.models import Message

    channel = twilio_channel()
    twilio.answers.append((status, body))
    message = Message.objects.create(application=application, channel=channel, receiver="+447700900123",
                                     content={"text": "hi"}, status=Status.QUEUED)

    with pytest.raises(ProviderError) as failure:
        TwilioProvider(channel).send(message, attempt=1)

    assert (failure.value.code, failure.value.permanent) == (code, permanent)


def test_a_permanent_send_error_fails_at_once_into_the_fallback(relay, twilio, backup_channel):
    twilio.answers.append((400, {"code": 21211, "message": "Invalid 'To'", "status": 400}))
    message = relay.submit(twilio_channel(), "+44",
                           fallback={"channel": backup_channel, "receiver": "ann@example.com", "content": {"text": "x"}})

    relay.attempt(message)

    assert codes(message) == ["QUEUED", "DELIVERY_FAILED"]
    assert fresh(message).fallback_to.status == Status.QUEUED


# --- status callbacks ------------------------------------------------------------------------


def sent_message(relay, channel, receiver="+447700900123"):
    message = relay.submit(channel, receiver)
    relay.attempt(message)
    return fresh(message)


def test_a_delivered_callback_delivers_and_a_late_sent_after_it_is_ignored(relay, twilio):
    channel = twilio_channel()
    message = sent_message(relay, channel)

    delivered = callback(channel, message.provider_ref, "delivered")
    late = callback(channel, message.provider_ref, "sent")

    assert (delivered.status_code, delivered.json()["outcome"]) == (200, "applied")
    assert (late.status_code, late.json()["outcome"]) == (200, "ignored")
    assert codes(message) == ["QUEUED", "SENT", "DELIVERED"]


def test_whatsapp_reaches_read(relay, twilio):
    channel = twilio_channel(whatsapp=True)
    message = sent_message(relay, channel)

    callback(channel, message.provider_ref, "delivered")
    callback(channel, message.provider_ref, "read")

    assert fresh(message).status == Status.READ


def test_an_undelivered_30003_is_retried(relay, twilio):
    channel = twilio_channel()
    message = sent_message(relay, channel)

    callback(channel, message.provider_ref, "undelivered", error_code=30003)

    assert codes(message)[-1] == "DELIVERY_RETRIED"
    assert message.events.get(status_code="DELIVERY_RETRIED").error_code == ErrorCode.RECEIVER_UNREACHABLE


def test_a_failed_21211_fails_at_once(relay, twilio):
    channel = twilio_channel()
    message = sent_message(relay, channel)

    callback(channel, message.provider_ref, "failed", error_code=21211)

    assert codes(message)[-1] == "DELIVERY_FAILED"


def test_a_callback_with_a_wrong_signature_is_401_and_changes_nothing(relay, twilio):
    channel = twilio_channel()
    message = sent_message(relay, channel)

    response = callback(channel, message.provider_ref, "delivered", token="not-the-" + TOKEN)

    assert response.status_code == 401
    assert fresh(message).status == Status.SENT


def test_a_callback_signed_over_the_requests_own_host_is_refused(relay, twilio):
    # Behind a proxy the Host differs from RELAY_PUBLIC_URL: Twilio signs the public URL.
    channel = twilio_channel()
    message = sent_message(relay, channel)

    response = callback(channel, message.provider_ref, "delivered", url="http://testserver/api/v1/receipts/sms")

    assert response.status_code == 401


def test_a_callback_for_an_unknown_sid_is_held_for_its_retries_then_recorded_unknown(twilio, settings):
    # It may have beaten the SENT record that stores the SID: it is tried again first.
    channel = twilio_channel()
    payload = {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered"}

    first = callback(channel, payload["MessageSid"], "delivered")
    (last,) = receipts.receipts_process(channel=channel, payloads=[payload], tries=settings.RELAY_RECEIPT_RETRIES)

    assert (first.status_code, first.json()["outcome"]) == (202, "deferred")
    assert last.outcome == "unknown_message"


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "complaint"), [
    ({"accountSid": "AC123"}, "accountSid"),
    ({"authToken": "short"}, "authToken"),
    ({"messagingServiceSid": "MG" + "1" * 32}, "exactly one"),
    ({"from": None}, "exactly one"),
    ({"whatsapp": "yes"}, "whatsapp"),
    ({"apiBaseUrl": "ftp://x"}, "apiBaseUrl"),
    ({"colour": "blue"}, "unknown"),
])
def test_a_bad_twilio_config_is_refused_naming_the_key(change, complaint):
    config = {"accountSid": ACCOUNT, "authToken": TOKEN, "from": "+15005550006", **change}

    with pytest.raises(ConfigError, match=complaint):
        TwilioProvider.clean_config(config)


def test_the_api_never_shows_the_auth_token(admin_api):
    config = {"accountSid": ACCOUNT, "authToken": TOKEN, "from": "+15005550006"}
    admin_api.post("/api/v1/channels", {"name": "sms", "type": "twilio", "config": config}, format="json")

    assert admin_api.get("/api/v1/channels/sms").json()["config"]["authToken"] == "••••6789"
