"""A subscription's extra HTTP headers as an operator writes them: one "Name: value" a line,
checked by the same rules as the API (comms.headers) before anything is saved.

Values of headers that carry credentials (Authorization, API keys, tokens) are shown masked,
as a channel's secrets are: saved back unchanged, the mask keeps the stored value."""

import re

from django import forms

from comms.headers import header_problem

# As the API's serializer: no value longer than this.
MAX_VALUE_LENGTH = 1000
CREDENTIAL = re.compile(r"authorization|cookie|token|secret|key|password|signature|credential", re.IGNORECASE)


def masked(name: str, value: str) -> str:
    """The first few characters of a credential (at most a third of it), never enough to use it."""
    return f"{value[:min(6, len(value) // 3)]}…" if CREDENTIAL.search(name) else value


def headers_as_lines(headers: dict) -> str:
    # By name: PostgreSQL's jsonb keeps no order of its own.
    return "\n".join(f"{name}: {masked(name, value)}"
                     for name, value in sorted((headers or {}).items(), key=lambda h: h[0].lower()))


def parse_header_lines(text: str, previous: dict | None = None) -> dict[str, str]:
    """Raises forms.ValidationError naming the line at fault. A masked value left as it was
    shown stands for the value in `previous`."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon:
            raise forms.ValidationError(f'Line {number}: write each header as "Name: value".')
        kept = (previous or {}).get(name)
        if kept is not None and value == masked(name, kept):
            value = kept
        problem = header_problem(name, value)
        if problem is None and len(value) > MAX_VALUE_LENGTH:
            problem = f"the value of {name!r} is longer than {MAX_VALUE_LENGTH} characters"
        if problem is None and name.lower() in {n.lower() for n in headers}:
            problem = f"{name!r} is given twice"
        if problem:
            raise forms.ValidationError(f"Line {number}: {problem}.")
        headers[name] = value
    return headers


class HeadersField(forms.CharField):
    """Edits a dict of headers as text; cleans to the dict the model stores. `previous` is
    the stored dict, which masked values stand for."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, "cols": 70, "spellcheck": "false"}))
        kwargs.setdefault("help_text", 'Extra HTTP headers sent with each webhook, one "Name: value" a line. '
                                       "Credentials are shown masked; leave them as shown to keep them.")
        super().__init__(**kwargs)
        self.previous: dict = {}

    def prepare_value(self, value):
        return headers_as_lines(value) if isinstance(value, dict) else value

    def to_python(self, value):
        return parse_header_lines(super().to_python(value) or "", self.previous)
