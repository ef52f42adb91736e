"""Search, sort and paging for the console's lists, done in the database (issue 17).

A list page reads ``q``, ``sort``, ``dir`` and ``page`` from its query string with ``parse``
and narrows, orders and slices a Peewee query with ``apply``. Sort columns come from an
allow-list; any value it does not hold (or a page that is not a positive whole number) falls
back to the default, never to an error: a bookmarked or hand-edited URL still shows a list.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from peewee import Field, Node, Query

PAGE_SIZE = 50
MAX_PAGE = 100_000  # an OFFSET past this is no list anyone pages through
MAX_QUERY = 200  # characters of a search kept


@dataclass(frozen=True)
class Listing:
    """One list's view as its query string states it."""

    q: str
    sort: str
    dir: str  # "asc" or "desc"
    page: int
    per_page: int = PAGE_SIZE

    def args(self, **changes) -> dict:
        """The query-string arguments for this view with ``changes``, defaults left out."""
        view = replace(self, **changes)
        args = {"q": view.q or None, "sort": view.sort, "dir": view.dir}
        if view.page > 1:
            args["page"] = view.page
        return args

    def sorted_by(self, column: str) -> dict:
        """The arguments of a column header's link: that column, flipping the direction."""
        if column == self.sort:
            return self.args(dir="desc" if self.dir == "asc" else "asc", page=1)
        return self.args(sort=column, dir="asc", page=1)


@dataclass(frozen=True)
class Page:
    rows: list
    listing: Listing
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.listing.per_page))

    @property
    def has_next(self) -> bool:
        return self.listing.page < self.pages

    @property
    def has_previous(self) -> bool:
        return self.listing.page > 1


def parse(
    args: Mapping[str, str],
    *,
    sorts: Sequence[str],
    default_sort: str,
    default_dir: str = "asc",
    per_page: int = PAGE_SIZE,
    prefix: str = "",
) -> Listing:
    """Read the list's view from ``args``; a value outside the allow-lists is the default.

    ``prefix`` names the arguments of a second list on the same page (``health_page``).
    """
    sort = args.get(prefix + "sort", "")
    direction = args.get(prefix + "dir", "")
    return Listing(
        q=args.get(prefix + "q", "").strip()[:MAX_QUERY],
        sort=sort if sort in sorts else default_sort,
        dir=direction if direction in ("asc", "desc") else default_dir,
        page=parse_page(args.get(prefix + "page", "")),
        per_page=per_page,
    )


def parse_page(value: str) -> int:
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return 1
    return min(max(int(value), 1), MAX_PAGE)


def apply(
    query: Query,
    listing: Listing,
    *,
    sorts: Mapping[str, Sequence[Field | Node]],
    search: Sequence[Field] = (),
) -> Page:
    """Filter ``query`` by the search, order it by the sort, and fetch one page of it.

    The search matches any of the ``search`` columns, case-insensitively, as a substring
    (``%`` and ``_`` are matched literally). ``sorts`` maps each allowed name to its columns;
    the last should be unique (the id) so that pages never overlap.
    """
    if listing.q and search:
        condition = None
        for column in search:
            match = column.contains(listing.q)
            condition = match if condition is None else condition | match
        query = query.where(condition)
    total = query.count()
    columns = sorts[listing.sort]
    order = [c.desc() if listing.dir == "desc" else c.asc() for c in columns]
    offset = (listing.page - 1) * listing.per_page
    rows = list(query.order_by(*order).limit(listing.per_page).offset(offset))
    return Page(rows, listing, total)
