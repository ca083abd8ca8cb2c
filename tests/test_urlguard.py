"""SSRF: webhook URLs into private networks are refused at create time and again at send time."""

import socket

import pytest

from comms.submission import message_submit
from deliveries import http, urlguard
from deliveries.models import Delivery, Subscription
from deliveries.sending import send_deliveries
from deliveries.services import subscription_create
from deliveries.urlguard import RefusedURL, check_url

BASE = "/api/v1/subscriptions"
PUBLIC = "93.184.216.34"

PRIVATE_URLS = [
    "http://127.0.0.1/hook",
    "http://localhost/hook",
    "http://10.0.0.5/hook",
    "http://192.168.1.10/hook",
    "http://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "https://127.0.0.1:8443/hook",
]


@pytest.fixture(autouse=True)
def _private_networks_refused(settings, published):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False


@pytest.fixture
def dns(monkeypatch):
    """Names resolved by this table (to a list of addresses, or to nothing: NXDOMAIN); any
    other name as usual. Patches socket.getaddrinfo, so the HTTP client sees it too."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in table:
            return real(host, port, *args, **kwargs)
        if not table[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)) if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    monkeypatch.setattr(urlguard.socket, "getaddrinfo", getaddrinfo)
    return table


def create(api, url):
    api.raise_request_exception = False
    return api.post(BASE, {"url": url}, format="json")


def send_one_event(application, channel) -> Delivery:
    message, _ = message_submit(application=application, data={
        "channel": channel, "receiver": "+447700900123", "content": {"text": "hi"}})
    delivery = Delivery.objects.get(event__message=message)
    send_deliveries([delivery.id])
    delivery.refresh_from_db()
    return delivery


# --- at create time ----------------------------------------------------------------------


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_url_into_a_private_network_is_refused_at_create(api, url):
    response = create(api, url)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["url"]
    assert not Subscription.objects.exists()


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_the_guard_refuses_a_url_into_a_private_network(url):
    with pytest.raises(RefusedURL):
        check_url(url)


def test_a_hostname_that_resolves_to_loopback_is_refused_at_create(api, dns):
    dns["hooks.example.test"] = ["127.0.0.1"]

    response = create(api, "https://hooks.example.test/hook")

    assert response.status_code == 400
    assert "127.0.0.1" in response.json()["errors"]["url"][0]


def test_a_hostname_with_any_private_address_among_its_addresses_is_refused(dns):
    dns["hooks.example.test"] = [PUBLIC, "10.1.2.3"]

    with pytest.raises(RefusedURL):
        check_url("https://hooks.example.test/hook")


def test_a_hostname_that_resolves_to_ipv4_mapped_loopback_is_refused(dns):
    dns["hooks.example.test"] = ["::ffff:127.0.0.1"]

    with pytest.raises(RefusedURL):
        check_url("https://hooks.example.test/hook")


def test_a_hostname_that_does_not_resolve_is_refused(api, dns):
    dns["nowhere.example.test"] = []

    response = create(api, "https://nowhere.example.test/hook")

    assert response.status_code == 400
    assert "url" in response.json()["errors"]


def test_a_hostname_that_resolves_to_a_public_address_is_allowed(api, dns):
    dns["hooks.example.com"] = [PUBLIC]

    response = create(api, "https://hooks.example.com/hook")

    assert response.status_code == 201, response.content


def test_the_guard_allows_a_public_address(dns):
    dns["hooks.example.com"] = [PUBLIC]

    assert check_url("https://hooks.example.com/hook") == [PUBLIC]  # the addresses to connect to


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/hook", "file:///etc/passwd",
                                 "gopher://hooks.example.com/", "javascript:alert(1)", "http:///hook"])
def test_the_guard_refuses_anything_but_http_with_a_host(settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True

    with pytest.raises(RefusedURL):
        check_url(url)


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_non_http_scheme_is_refused_at_create(settings, api, dns, allow_private):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = allow_private
    dns["hooks.example.com"] = [PUBLIC]

    response = create(api, "ftp://hooks.example.com/hook")

    assert response.status_code == 400
    assert "url" in response.json()["errors"]


def test_changing_the_url_to_a_private_one_is_refused(api, application, dns):
    dns["hooks.example.com"] = [PUBLIC]
    sub = subscription_create(application=application, url="https://hooks.example.com/hook")

    response = api.patch(f"{BASE}/{sub.id}", {"url": "http://169.254.169.254/"}, format="json")

    assert response.status_code == 400
    assert "url" in response.json()["errors"]
    assert Subscription.objects.get(id=sub.id).url == "https://hooks.example.com/hook"


def test_with_private_networks_allowed_loopback_is_accepted(settings, api):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True

    response = create(api, "http://127.0.0.1:8080/hook")

    assert response.status_code == 201, response.content


def test_with_private_networks_allowed_the_guard_passes_loopback(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True

    assert check_url("http://localhost:8080/hook") == []


def test_a_url_with_an_impossible_port_is_refused_with_400(api, dns):
    dns["hooks.example.com"] = [PUBLIC]

    response = create(api, "https://hooks.example.com:99999/hook")

    assert response.status_code == 400
    assert "url" in response.json()["errors"]


# --- at send time ------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1"])
def test_a_host_whose_dns_changed_to_a_private_address_is_refused_at_send(receiver, application, channel, dns,
                                                                          address):
    dns["hooks.example.test"] = [PUBLIC]
    subscription_create(application=application, url=f"http://hooks.example.test:{receiver.port}/hook")
    dns["hooks.example.test"] = [address]

    delivery = send_one_event(application, channel)

    attempt = delivery.attempt_log.get()
    assert (attempt.error_kind, attempt.status_code) == ("refused_url", None)
    assert address in attempt.error_detail


def test_nothing_is_posted_to_a_host_that_now_resolves_to_loopback(receiver, application, channel, dns):
    dns["hooks.example.test"] = [PUBLIC]
    subscription_create(application=application, url=f"http://hooks.example.test:{receiver.port}/hook")
    dns["hooks.example.test"] = ["127.0.0.1"]  # where the receiver really listens

    send_one_event(application, channel)

    assert receiver.requests == []


def test_a_loopback_subscription_is_refused_at_send_once_private_networks_are_off(settings, receiver,
                                                                                  application, channel):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    subscription_create(application=application, url=receiver.url)
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    delivery = send_one_event(application, channel)

    assert delivery.attempt_log.get().error_kind == "refused_url"
    assert receiver.requests == []


def test_a_refused_url_at_send_is_a_failed_attempt_that_will_be_retried(receiver, application, channel, dns):
    dns["hooks.example.test"] = [PUBLIC]
    subscription_create(application=application, url=f"http://hooks.example.test:{receiver.port}/hook")
    dns["hooks.example.test"] = ["127.0.0.1"]

    delivery = send_one_event(application, channel)

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)


def test_a_host_that_rebinds_between_the_check_and_the_connection_is_not_reached(
        receiver, application, channel, dns, monkeypatch):
    dns["hooks.example.test"] = [PUBLIC]
    subscription_create(application=application, url=f"http://hooks.example.test:{receiver.port}/hook")
    answers = iter([PUBLIC])  # the next lookup is public, every later one loopback
    resolve = urlguard.socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "hooks.example.test":
            dns[host] = [next(answers, "127.0.0.1")]
        return resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(urlguard.socket, "getaddrinfo", rebinding)

    send_one_event(application, channel)

    assert receiver.requests == []


def test_a_vetted_address_is_connected_to_with_the_url_host_in_the_host_header(receiver, dns):
    # The name resolves nowhere: only the pinned address can have reached the receiver.
    dns["hooks.example.test"] = []

    outcome = http.post(f"http://hooks.example.test:{receiver.port}/hook?x=1", "{}",
                        {"Content-Type": "application/json"}, addresses=["127.0.0.1"])

    assert outcome.status_code == 200
    request = receiver.requests[0]
    assert (request.path, request.headers["host"]) == ("/hook?x=1", f"hooks.example.test:{receiver.port}")


def test_when_a_vetted_address_refuses_the_next_one_is_tried(receiver, dns):
    dns["hooks.example.test"] = []

    # The receiver listens on 127.0.0.1 only: 127.0.0.2 refuses the connection.
    outcome = http.post(f"http://hooks.example.test:{receiver.port}/hook", "{}",
                        {"Content-Type": "application/json"}, addresses=["127.0.0.2", "127.0.0.1"])

    assert outcome.status_code == 200
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("url", ["http://exa mple.com/hook", "http://[::1/hook"])
def test_a_url_http_cannot_parse_is_an_invalid_request_not_a_connection_error(url):
    # Stored before the API checked it: a failed attempt of its own kind, never a crash.
    outcome = http.post(url, "{}", {"Content-Type": "application/json"})

    assert (outcome.status_code, outcome.error_kind) == (None, "invalid_request")
