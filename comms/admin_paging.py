"""A paginator for tables of millions of rows: it counts at most a cap.

Django's paginator runs count(*) over the whole filtered table on every page, which on a
million messages costs more than the page itself. This one counts through a LIMITed
subquery, `SELECT count(*) FROM (SELECT ... LIMIT cap + 1)`, so PostgreSQL stops reading
at the cap; the list then says "10,000+" and pages through the first cap rows."""

from django.conf import settings
from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CappedPaginator(Paginator):
    @cached_property
    def cap(self) -> int:
        return settings.RELAY_ADMIN_COUNT_CAP

    @cached_property
    def _counted(self) -> int:
        rows = self.object_list
        if hasattr(rows, "order_by"):  # a queryset: the order does not change the count
            return rows.order_by()[: self.cap + 1].count()
        return len(rows[: self.cap + 1])

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @property
    def capped(self) -> bool:
        """More rows than were counted."""
        return self._counted > self.cap

    @property
    def shown_count(self) -> str:
        return f"{self.count:,}+" if self.capped else f"{self.count:,}"
