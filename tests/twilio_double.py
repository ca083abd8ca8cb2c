"""A local stand-in for Twilio's Messages API, on 127.0.0.1: answers as Twilio does, then
calls the StatusCallback it was given, signed as Twilio signs (RequestValidator).

    with TwilioDouble(auth_token) as twilio:
        ...a twilio channel with "apiBaseUrl": twilio.url...

The receiver number steers the outcome, as Twilio's magic test numbers do:
`+15005550001` is refused at once (21211), `+15005550002` ends undelivered (30003),
anything else is delivered, and WhatsApp messages are read as well.
"""

import threading
from urllib.parse import parse_qsl

import requests
from twilio.request_validator import RequestValidator

from tests.doubles import JsonApi

INVALID = "+15005550001"
UNREACHABLE = "+15005550002"


class TwilioDouble:
    def __init__(self, auth_token: str, *, callback_delay: float = 0.2):
        self.auth_token = auth_token
        self.callback_delay = callback_delay
        self.created: list[dict] = []
        self.callbacks: list[tuple[dict, int]] = []  # (params, status Relay answered)
        self._lock = threading.Lock()
        self.api = JsonApi(lambda path, headers, body: self._create(dict(parse_qsl(body.decode()))))
        self.url = self.api.url

    def _create(self, form: dict) -> tuple[int, dict]:
        number = form["To"].removeprefix("whatsapp:")
        if number == INVALID:
            return 400, {"code": 21211, "message": f"The 'To' number {number} is not a valid phone number.",
                         "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}
        with self._lock:
            self.created.append(form)
            sid = f"SM{len(self.created):032d}"
        statuses = [("sent", None), ("undelivered", "30003")] if number == UNREACHABLE else \
            [("sent", None), ("delivered", None)] + ([("read", None)] if form["To"].startswith("whatsapp:") else [])
        threading.Timer(self.callback_delay, self._call_back, (form["StatusCallback"], sid, form, statuses)).start()
        return 201, {"sid": sid, "status": "queued", "to": form["To"], "from": form.get("From")}

    def _call_back(self, url: str, sid: str, form: dict, statuses) -> None:
        for status, error_code in statuses:
            params = {"MessageSid": sid, "MessageStatus": status, "To": form["To"], "From": form.get("From", "")}
            if error_code:
                params["ErrorCode"] = error_code
            signature = RequestValidator(self.auth_token).compute_signature(url, params)
            answer = requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
            with self._lock:
                self.callbacks.append((params, answer.status_code))

    def __enter__(self) -> "TwilioDouble":
        self.api.start()
        return self

    def __exit__(self, *exc) -> None:
        self.api.stop()
