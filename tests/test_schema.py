"""The OpenAPI schema tells the truth: what responses hold (lists as lists, nulls as
nullable), what requests need (required fields), every error status with the error shape,
and the API key as a bearer scheme."""

import re
import sys

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def component(schema, name):
    return schema["components"]["schemas"][name]


def operations(schema):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_a_messages_events_are_a_list_of_event_objects(schema):
    events = component(schema, "MessageDetail")["properties"]["events"]

    assert events["type"] == "array"
    assert events["items"] == {"$ref": "#/components/schemas/Event"}
    event = component(schema, "Event")
    assert set(event["required"]) == {"id", "statusCode", "messageId", "channelName", "context",
                                      "timeStamp", "sequence"}


@pytest.mark.parametrize("name, fields", [
    ("Message", ["sendAt", "expiresAt"]),
    ("Subscription", ["disabledAt", "failingSince", "backingOffSince", "nextProbeAt"]),
    ("Delivery", ["nextAttemptAt"]),
    ("Attempt", ["statusCode"]),
])
def test_fields_that_answer_null_are_nullable(schema, name, fields):
    properties = component(schema, name)["properties"]

    assert [f for f in fields if not properties[f].get("nullable")] == []


def test_a_message_request_requires_channel_receiver_and_content_text(schema):
    message = component(schema, "MessageInputRequest")

    assert set(message["required"]) == {"channel", "receiver", "content"}
    assert component(schema, "ContentRequest")["required"] == ["text"]
    assert message["properties"]["fallback"]["allOf"] == [{"$ref": "#/components/schemas/MessageInputRequest"}]


def test_a_batchs_items_are_message_requests_not_free_objects(schema):
    messages = component(schema, "BatchInputRequest")["properties"]["messages"]

    assert messages["items"] == {"$ref": "#/components/schemas/MessageInputRequest"}
    assert (messages["minItems"], messages["maxItems"]) == (1, 1000)


def test_the_api_key_is_a_bearer_scheme_every_operation_but_receipts_requires(schema):
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": "An application's API key: `Authorization: Bearer <api key>`."}
    for method, path, op in operations(schema):
        expected = [{}] if path.startswith("/api/v1/receipts/") else [{"apiKey": []}]
        assert op["security"] == expected, (method, path)


def test_every_operation_documents_its_errors_with_the_error_shape(schema):
    missing = []
    for method, path, op in operations(schema):
        codes = set(op["responses"])
        expected = {"503"} | ({"401"} if not path.startswith("/api/v1/receipts/") else set())
        if "{" in path:
            expected.add("404")
        if "requestBody" in op:
            expected |= {"400", "413", "415"}
        if path.startswith("/api/v1/channels"):
            expected.add("403")
        missing += [(method, path, code) for code in expected - codes]
        for code in codes - {"200", "201", "202", "204", "409"}:
            body = op["responses"][code]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)
    assert missing == []
    assert set(component(schema, "Error")["required"]) == {"code", "message"}


def test_lists_document_their_400_and_a_bounded_page_size(schema):
    list_messages = schema["paths"]["/api/v1/messages"]["get"]
    page_size = next(p for p in list_messages["parameters"] if p["name"] == "pageSize")

    assert "400" in list_messages["responses"]
    assert page_size["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}


def test_a_too_late_cancel_documents_its_409_body(schema):
    conflict = schema["paths"]["/api/v1/messages/{message_id}/cancel"]["post"]["responses"]["409"]

    assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CancelTooLate"}


def test_a_subscription_url_is_documented_as_http_or_https(schema):
    url = component(schema, "SubscriptionRequest")["properties"]["url"]

    assert url["pattern"] == "^https?://"


def test_a_messages_channel_is_documented_as_a_channel_name(schema):
    channel = component(schema, "MessageInputRequest")["properties"]["channel"]

    assert (channel["minLength"], channel["maxLength"], channel["pattern"]) == (1, 100, "^[-a-zA-Z0-9_]+$")


@pytest.mark.parametrize("path, method", [("/api/v1/channels", "post"), ("/api/v1/channels/{name}", "put"),
                                          ("/api/v1/channels/{name}", "patch")])
def test_a_taken_channel_name_documents_its_409(schema, path, method):
    assert "409" in schema["paths"][path][method]["responses"]


def test_string_query_parameters_are_documented_non_empty(schema):
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/messages"]["get"]["parameters"]}

    assert [name for name in ("channel", "receiver", "cursor", "createdAfter", "createdBefore")
            if parameters[name].get("minLength") != 1] == []


def test_a_receivers_pattern_accepts_exactly_what_is_not_trimmed_away(schema):
    """A receiver of only whitespace is refused after DRF trims it; the schema must say which
    characters that is (Python's whitespace, not JSON Schema's \\s), or a generated "valid"
    receiver such as "\\x1f" is refused."""
    text = schema["components"]["schemas"]["MessageInputRequest"]["properties"]["receiver"]["pattern"]
    # \s and friends mean one thing to JSON Schema (ECMA 262) and another to Python's re.
    assert re.search(r"\\[sSdDwW]", text) is None
    pattern = re.compile(text)
    disagree = [hex(ord(c)) for c in map(chr, range(sys.maxunicode + 1))
                if (pattern.search(c) is None) != (c.strip() == "")]
    assert disagree == []
