"""JSON that the database can store: a number too large for a float (1e400, which parses to
infinity), and strings holding NUL or a lone surrogate (\u0000, \ud800), which PostgreSQL's
jsonb and UTF-8 cannot carry, are refused where a body is read rather than failing as a 500
later. Used by the API's parser and by providers reading their receipts."""

import json
import math


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _check_strings(value) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings may not contain NUL (\\u0000)")
        value.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def loads(text: str):
    """json.loads for storable data; raises ValueError for anything refused."""
    try:
        data = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deeply") from exc
    if "\\u" in text:  # only escapes can smuggle NUL or a lone surrogate in
        _check_strings(data)
    return data
