"""The simulator provider: tokens in the receiver steer what each attempt's receipt says."""

import pytest

from comms.models import Channel, Message
from comms.providers import ConfigError, ProviderError, Sent
from comms.providers.simulator import CLICK_LINK, READ_ENV, Behaviour, SimulatorProvider
from comms.status import ErrorCode

MESSAGE_ID = "a" * 32


def provider(config: dict | None = None) -> SimulatorProvider:
    return SimulatorProvider(Channel(name="sim", type="simulator", config=config or {}))


def message(receiver: str) -> Message:
    return Message(id=MESSAGE_ID, receiver=receiver)


def receipt(receiver: str, attempt: int, config: dict | None = None) -> dict | None:
    sent = Sent(message(receiver), attempt, f"sim-{MESSAGE_ID}-{attempt}")
    return provider(config).receipt_for(sent, Behaviour.of(receiver))


def words(payload: dict) -> list[str]:
    return [e["event"] for e in payload["events"]]


# Behaviour.of


@pytest.mark.parametrize(
    ("receiver", "expected"),
    [
        ("+447700900123", Behaviour()),
        ("ann@example.com", Behaviour()),
        ("+447700900123#fail", Behaviour(fail_first=-1)),
        ("+447700900123#fail2", Behaviour(fail_first=2)),
        ("+447700900123#fail1", Behaviour(fail_first=1)),
        ("+447700900123#reject", Behaviour(reject=True)),
        ("ann@example.com#read", Behaviour(read=True)),
        ("ann@example.com#delete", Behaviour(delete=True)),
        ("ann@example.com#click", Behaviour(click=True)),
        ("+447700900123#silent", Behaviour(silent=True)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_behaviour_is_read_from_the_receiver_token(receiver, expected):
    assert Behaviour.of(receiver) == expected


@pytest.mark.parametrize("receiver", ["+447700900123#bogus", "+447700900123#failx", "+447700900123#", "a#readme"])
def test_unknown_tokens_are_ignored(receiver):
    assert Behaviour.of(receiver) == Behaviour()


def test_tokens_are_case_insensitive():
    assert Behaviour.of("ann@example.com#READ") == Behaviour(read=True)


def test_several_tokens_combine():
    assert Behaviour.of("ann@example.com#fail1#read") == Behaviour(fail_first=1, read=True)


def test_fail_without_a_count_fails_every_attempt():
    behaviour = Behaviour(fail_first=-1)

    assert [behaviour.fails(a) for a in (1, 2, 10)] == [True, True, True]


def test_fail_with_a_count_fails_only_the_first_attempts():
    behaviour = Behaviour(fail_first=2)

    assert [behaviour.fails(a) for a in (1, 2, 3)] == [True, True, False]


# send


def test_send_returns_a_reference_per_attempt():
    assert provider().send(message("+447700900123"), attempt=2) == f"sim-{MESSAGE_ID}-2"


def test_send_of_a_rejected_receiver_raises_a_permanent_error():
    with pytest.raises(ProviderError) as raised:
        provider().send(message("+447700900123#reject"), attempt=1)

    assert raised.value.permanent is True
    assert raised.value.code == ErrorCode.REJECTED_BY_CHANNEL
    assert raised.value.raw_code == "reject"


@pytest.mark.parametrize("token", ["", "#fail", "#read", "#delete", "#silent"])
def test_send_accepts_every_receiver_but_a_rejected_one(token):
    assert provider().send(message(f"+447700900123{token}"), attempt=1)


# receipt_for


def test_receipt_names_the_message_attempt_and_reference():
    payload = receipt("+447700900123", attempt=3)

    assert payload == {
        "messageId": MESSAGE_ID,
        "attempt": 3,
        "ref": f"sim-{MESSAGE_ID}-3",
        "events": [{"event": "delivered"}],
    }


@pytest.mark.parametrize(
    ("token", "attempt", "expected"),
    [
        ("", 1, ["delivered"]),
        ("#fail", 1, ["undelivered"]),
        ("#fail", 7, ["undelivered"]),
        ("#fail2", 1, ["undelivered"]),
        ("#fail2", 2, ["undelivered"]),
        ("#fail2", 3, ["delivered"]),
        ("#read", 1, ["delivered", "read"]),
        ("#delete", 1, ["delivered", "read", "deleted"]),
        ("#click", 1, ["delivered", "read", "clicked"]),
        ("#fail1#read", 1, ["undelivered"]),
        ("#fail1#read", 2, ["delivered", "read"]),
    ],
)
def test_receipt_events_follow_the_token_and_attempt(token, attempt, expected):
    assert words(receipt(f"ann@example.com{token}", attempt)) == expected


def test_silent_receiver_gets_no_receipt():
    assert receipt("+447700900123#silent", attempt=1) is None


def test_failure_rate_of_one_fails_every_attempt():
    assert words(receipt("+447700900123", attempt=1, config={"failureRate": 1})) == ["undelivered"]


# parse_receipt


@pytest.mark.parametrize(
    ("word", "kind"),
    [("delivered", "DELIVERED"), ("undelivered", "FAILED"), ("read", "READ"),
     ("clicked", "INTERACTED"), ("deleted", "DELETED")],
)
def test_parse_receipt_maps_each_word_to_its_kind(word, kind):
    payload = {"messageId": MESSAGE_ID, "attempt": 2, "events": [{"event": word}]}

    (event,) = provider().parse_receipt(payload)

    assert (event.kind, event.message_id, event.attempt) == (kind, MESSAGE_ID, 2)


def test_parse_receipt_gives_a_failure_a_temporary_unknown_error():
    payload = {"messageId": MESSAGE_ID, "attempt": 1, "events": [{"event": "undelivered"}]}

    (event,) = provider().parse_receipt(payload)

    assert event.error.code == ErrorCode.CHANNEL_UNKNOWN_ERROR
    assert event.error.permanent is False
    assert event.error.raw_code == "undelivered"


def test_a_click_receipt_carries_the_link_clicked():
    (clicked,) = [e for e in receipt("ann@example.com#click", attempt=1)["events"] if e["event"] == "clicked"]

    assert clicked == {"event": "clicked", "link": CLICK_LINK}


def test_parse_receipt_gives_a_click_its_link_and_nothing_else_one():
    payload = {"messageId": MESSAGE_ID, "attempt": 1,
               "events": [{"event": "read", "link": CLICK_LINK}, {"event": "clicked", "link": CLICK_LINK}]}

    read, clicked = provider().parse_receipt(payload)

    assert (read.link, clicked.kind, clicked.link) == ("", "INTERACTED", CLICK_LINK)


def test_parse_receipt_gives_read_the_simulated_env():
    payload = {"messageId": MESSAGE_ID, "attempt": 1, "events": [{"event": "read"}]}

    (event,) = provider().parse_receipt(payload)

    assert event.env == READ_ENV


def test_parse_receipt_reads_what_receipt_for_writes():
    payload = receipt("ann@example.com#delete", attempt=1)

    events = provider().parse_receipt(payload)

    assert [e.kind for e in events] == ["DELIVERED", "READ", "DELETED"]


@pytest.mark.parametrize(
    "payload",
    [
        {"attempt": 1, "events": [{"event": "delivered"}]},
        {"messageId": MESSAGE_ID, "events": [{"event": "delivered"}]},
        {"messageId": MESSAGE_ID, "attempt": 1},
        {"messageId": MESSAGE_ID, "attempt": "first", "events": [{"event": "delivered"}]},
        {"messageId": MESSAGE_ID, "attempt": None, "events": [{"event": "delivered"}]},
        {"messageId": MESSAGE_ID, "attempt": 1, "events": None},
        {"messageId": MESSAGE_ID, "attempt": 1, "events": "delivered"},
        {"messageId": MESSAGE_ID, "attempt": 1, "events": [{"status": "delivered"}]},
        {"messageId": MESSAGE_ID, "attempt": 1, "events": [{"event": "bounced"}]},
        [],
        None,
        "delivered",
    ],
    ids=["no-message-id", "no-attempt", "no-events", "attempt-not-a-number", "attempt-null",
         "events-null", "events-a-string", "event-without-word", "unknown-word", "a-list", "null",
         "a-string"],
)
def test_parse_receipt_rejects_a_malformed_payload(payload):
    with pytest.raises(ValueError):
        provider().parse_receipt(payload)


@pytest.mark.parametrize("attempt", [0, -1])
def test_parse_receipt_rejects_an_attempt_below_one(attempt):
    payload = {"messageId": MESSAGE_ID, "attempt": attempt, "events": [{"event": "undelivered"}]}

    with pytest.raises(ValueError):
        provider().parse_receipt(payload)


# clean_config


def test_clean_config_generates_a_receipt_secret():
    config = SimulatorProvider.clean_config({})

    assert isinstance(config["receiptSecret"], str)
    assert len(config["receiptSecret"]) >= 16


def test_clean_config_keeps_a_given_receipt_secret():
    config = SimulatorProvider.clean_config({"receiptSecret": "s" * 20})

    assert config["receiptSecret"] == "s" * 20


@pytest.mark.parametrize(
    "config",
    [{"receiptDelay": 0.5}, {"failureRate": 0}, {"failureRate": 1}, {"receiptDelay": 2, "failureRate": 0.25}],
)
def test_clean_config_accepts_valid_settings(config):
    assert SimulatorProvider.clean_config(config).items() >= config.items()


@pytest.mark.parametrize(
    "config",
    [
        {"receiptDelay": -1},
        {"receiptDelay": "0.5"},
        {"receiptDelay": True},
        {"receiptDelay": None},
        {"failureRate": -0.1},
        {"failureRate": 1.5},
        {"failureRate": "high"},
        {"receiptSecret": "short"},
        {"receiptSecret": 12345678901234567890},
        {"colour": "blue"},
        ["receiptDelay"],
    ],
    ids=["delay-negative", "delay-string", "delay-bool", "delay-null", "rate-negative",
         "rate-above-one", "rate-string", "secret-short", "secret-not-string", "unknown-key",
         "not-an-object"],
)
def test_clean_config_rejects_invalid_settings(config):
    with pytest.raises(ConfigError):
        SimulatorProvider.clean_config(config)


# receipt_timeout


def test_receipt_timeout_is_none_for_a_silent_receiver():
    assert provider().receipt_timeout(message("+447700900123#silent")) is None


def test_receipt_timeout_allows_for_the_receipt_delay():
    assert provider({"receiptDelay": 2}).receipt_timeout(message("+447700900123")) == 32.0
