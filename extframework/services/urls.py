"""Read URLs the way browsers read them, so the core decides on what the browser will follow.

One parser (``ada``, the WHATWG URL parser Node.js uses) serves fragments, plugin redirects and
the login's ``next``: it strips leading and trailing C0 controls and spaces, drops every tab,
CR and LF, reads backslashes as slashes in http(s) and relative URLs, treats ``%2e`` as a dot
in dot segments and resolves them. Deciding with Python's ``urlsplit`` instead let
``/<TAB>/evil.example`` and ``/%2e%2e/console`` through (issue 11).
"""

import re
from dataclasses import dataclass

from ada_url import URL

# Stand-ins for "the plugin's own path space" and "the core's own origin": ``.invalid`` can
# never resolve (RFC 2606), so only a relative URL (or one naming this host literally) lands
# on them.
PLUGIN_SPACE = "https://plugin.invalid"
CORE_SPACE = "https://core.invalid"


@dataclass(frozen=True)
class Resolved:
    """A URL after the browser's parsing, split into what the shell needs."""

    href: str
    origin: str
    path: str  # path, query and fragment: what follows the origin


def resolve(url: str, base: str) -> Resolved | None:
    """Resolve ``url`` against ``base`` exactly as a browser would; None if it cannot parse."""
    try:
        parsed = URL(url, base)
    except ValueError:
        return None
    if parsed.origin == "null":  # mailto:, tel:, data: ... have no origin and no shell path
        return Resolved(parsed.href, "null", "")
    return Resolved(parsed.href, parsed.origin, parsed.pathname + parsed.search + parsed.hash)


def clean(url: str) -> str:
    """Drop what a browser drops before parsing: outer C0 controls and spaces, tabs and newlines."""
    return url.strip(_C0_AND_SPACE).translate(_TAB_AND_NEWLINE)


_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_AND_NEWLINE = dict.fromkeys(map(ord, "\t\n\r"))

# A path-absolute URL of these characters only (no "%", "\\", "#", space or quote) reads the
# same in every browser as written, unless it holds a "." or ".." segment: most links in a
# fragment, which then need no parser (ada costs ~10 µs a URL through its Python binding).
_PLAIN = re.compile(
    r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@/]*(?:\?[A-Za-z0-9\-._~!$&()*+,;=:@/?%]+)?\Z"
)


def plain_path(url: str) -> bool:
    """Tell whether a browser reads ``url`` as exactly this path (and query) on the same origin."""
    if _PLAIN.match(url) is None:
        return False
    path = url.split("?", 1)[0] + "/"
    return "/./" not in path and "/../" not in path


def plugin_path(url: str, *, current_path: str, base_url: str) -> str | None:
    """Return the plugin path (path, query, fragment) a URL in plugin markup points at.

    ``/x`` is a plugin path (as in the manifest), ``x`` and ``?q`` resolve against
    ``current_path``, and an absolute URL under ``base_url`` maps to the path beneath it.
    Anything else leaves the plugin: None.
    """
    if plain_path(url):
        return url
    resolved = resolve(url, PLUGIN_SPACE + (current_path or "/"))
    if resolved is None:
        return None
    if resolved.origin == PLUGIN_SPACE:
        return resolved.path
    return path_under_base(resolved.href, base_url)


def path_under_base(url: str, base_url: str) -> str | None:
    """Return the plugin path of an absolute URL under ``base_url``, or None."""
    resolved = resolve(url, base_url)
    base = resolve(base_url.rstrip("/"), base_url)
    if resolved is None or base is None or resolved.origin != base.origin:
        return None
    base_path = base.path.rstrip("/")
    rest = resolved.path[len(base_path) :]
    if not resolved.path.startswith(base_path) or (rest and rest[0] not in "/?#"):
        return None
    return rest if rest.startswith("/") else "/" + rest


def within(url: str, prefix: str) -> bool:
    """Tell whether a URL written into a shell page stays under the core's ``prefix`` path."""
    if plain_path(url):
        return url == prefix or url.startswith((prefix + "/", prefix + "?"))
    resolved = resolve(url, CORE_SPACE + prefix + "/")
    if resolved is None or resolved.origin != CORE_SPACE:
        return False
    path = resolved.path.split("?", 1)[0].split("#", 1)[0]
    return path == prefix or path.startswith(prefix + "/")


def local_path(url: str) -> str | None:
    """Return a URL as a path on the core itself, or None if the browser would leave it."""
    resolved = resolve(url, CORE_SPACE + "/")
    if resolved is None or resolved.origin != CORE_SPACE:
        return None
    # "/.//evil.example" resolves to the path "//evil.example": as a Location that is another host.
    return "/" + resolved.path.lstrip("/")
