"""Cursor pagination, newest first, with a page size the client may choose within bounds: a
pageSize that is not a whole number from 1 to MAX_PAGE_SIZE is a 400, never silently ignored."""

from rest_framework.exceptions import ValidationError
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
