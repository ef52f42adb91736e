"""Times on console pages: relative ("3 min ago") with the exact UTC time on hover (issue 17).

Rendered on the server, so the pages need no script; the ``<time>`` element carries the
machine-readable time for anyone who wants it.
"""

from datetime import UTC, datetime

from markupsafe import Markup, escape

from extframework.models import utcnow

_UNITS = ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "h"), (60, "min"))


def _parse(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.removesuffix("Z"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def relative(value: datetime | str, now: datetime | None = None) -> str:
    """Say how long ago (or how soon) ``value`` is, in the largest whole unit."""
    seconds = int(((now or utcnow()) - _parse(value)).total_seconds())
    amount = abs(seconds)
    if amount < 10:
        return "just now"
    phrase = f"{amount} s"
    for size, unit in _UNITS:
        if amount >= size:
            count = amount // size
            plural = "s" if count > 1 and unit not in ("h", "min") else ""
            phrase = f"{count} {unit}{plural}"
            break
    return f"{phrase} ago" if seconds > 0 else f"in {phrase}"


def time_part(value: datetime | str | None, empty: str = "—", now: datetime | None = None):
    """Say ``value`` as ``{"at": ISO, "title": exact, "ago": relative}``, or ``empty`` for no time.

    The live pages' form of ``time_tag``: static/live.js builds the same ``<time>`` from it.
    """
    if value is None or value == "":
        return empty
    moment = _parse(value)
    return {
        "at": moment.isoformat(timespec="seconds") + "Z",
        "title": moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "ago": relative(moment, now),
    }


def time_tag(value: datetime | str | None, empty: str = "—", now: datetime | None = None) -> Markup:
    """Render ``<time datetime=ISO title="exact">relative</time>``, or ``empty`` for no time."""
    part = time_part(value, empty, now)
    if isinstance(part, str):
        return Markup(escape(part))
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        part["at"], part["title"], part["ago"]
    )
