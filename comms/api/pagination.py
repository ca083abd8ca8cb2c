"""Cursor pagination, newest first, with a page size the client may choose within bounds: a
pageSize that is not a whole number from 1 to MAX_PAGE_SIZE is a 400, never silently ignored."""

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

MAX_PAGE_SIZE = 500


class NewestFirst(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    max_page_size = MAX_PAGE_SIZE
    page_size_query_param = "pageSize"

    def get_page_size(self, request):
        given = request.query_params.get(self.page_size_query_param)
        if given is None:
            return self.page_size
        if not given.isdigit() or not 1 <= int(given) <= MAX_PAGE_SIZE:
            raise ValidationError({self.page_size_query_param: [f"Must be a whole number from 1 to {MAX_PAGE_SIZE}."]})
        return int(given)

    def decode_cursor(self, request):
        # A cursor the client garbled is bad input (400), not a missing resource (DRF's 404).
        if request.query_params.get(self.cursor_query_param) == "":
            raise ValidationError({self.cursor_query_param: ["Must not be empty: leave it out for the first page."]})
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: ["Not a cursor this API gave out."]}) from None

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                                       "default": self.page_size}
                parameter["description"] = f"Results per page, 1 to {MAX_PAGE_SIZE}."
            elif parameter["name"] == self.cursor_query_param:
                parameter["description"] = "The `next` or `previous` link's cursor."
        return parameters
