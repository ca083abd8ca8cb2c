"""The API's JSON parser: bodies the database can store (see comms.jsonstore)."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from ..jsonstore import loads

__all__ = ["StrictJSONParser", "loads"]


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        # JSON is UTF-8 (RFC 8259): a charset the client names is not honoured, since a
        # decoder such as UTF-7 could produce what the checks below look for in escapes.
        try:
            return loads(stream.read().decode("utf-8"))
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
