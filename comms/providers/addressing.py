"""What a channel type can carry: receivers it can address and content it can send.

Checked when a message is accepted, so a message a provider would refuse for its shape is a
400 with a per-field message now, not a DELIVERY_FAILED later. Each check returns the errors
keyed like the API's fields (`{"receiver": [...], "content": {"text": [...]}}`), empty when
the message fits.
"""

import re
from email.utils import parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

# ITU-T E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"\+[1-9]\d{1,14}")
# An alphanumeric sender ID (where carriers allow one): up to 11 letters, digits or spaces.
ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
# Twilio concatenates a long body into segments and refuses one over 1,600 characters.
SMS_MAX_CHARS = 1600

Errors = dict[str, list[str] | dict[str, list[str]]]


def phone_number_errors(field: str, value: str, *, prefix: str = "") -> Errors:
    number = value.removeprefix(prefix) if prefix else value
    if E164.fullmatch(number):
        return {}
    example = f"'{prefix}+447700900123'" if prefix else "'+447700900123'"
    return {field: [f"An E.164 phone number is required, such as {example} (a plus, the country "
                    "code, at most 15 digits, no spaces)."]}


def sms_sender_errors(field: str, value: str, *, prefix: str = "") -> Errors:
    """A number, or (for SMS) an alphanumeric sender ID."""
    if not prefix and ALPHANUMERIC_SENDER.fullmatch(value):
        return {}
    return phone_number_errors(field, value, prefix=prefix)


def email_address_errors(field: str, value: str, *, display_name: bool = False) -> Errors:
    """An address; with `display_name`, 'Ann <ann@example.com>' too (a sender's From)."""
    address = parseaddr(value)[1] if display_name and "<" in value else value
    try:
        validate_email(address)
    except ValidationError:
        return {field: ["An email address is required, such as 'ann@example.com'."]}
    return {}


def sms_body_errors(content: dict) -> Errors:
    text = content.get("text", "")
    if len(text) > SMS_MAX_CHARS:
        return {"content": {"text": [
            f"An SMS or WhatsApp body has at most {SMS_MAX_CHARS} characters (this one has {len(text)})."]}}
    return {}


def email_size_errors(content: dict) -> Errors:
    size = sum(len((content.get(part) or "").encode()) for part in ("subject", "text", "html"))
    limit = settings.RELAY_MAX_EMAIL_BYTES
    if size > limit:
        return {"content": [f"An email's subject, text and html together have at most {limit} "
                            f"bytes (this one has {size})."]}
    return {}


def merged(*errors: Errors) -> Errors:
    result: Errors = {}
    for item in errors:
        for field, problems in item.items():
            if isinstance(problems, dict) and isinstance(result.get(field), dict):
                result[field] = {**result[field], **problems}
            else:
                result.setdefault(field, problems)
    return result
