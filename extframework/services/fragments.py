"""Make a plugin's HTML safe to place in the shell (SPEC §8).

``nh3`` (ammonia) sanitizes against an allow-list: no script, no style, no event-handler
attributes, no URL schemes but http, https, mailto and tel. Its attribute filter and one
pass over the form tags of its (well-formed, escaped) output then

- rewrites links, form actions and image sources that point into the plugin to the
  core's proxy routes (``/plugin-proxy/<plugin_id>/...``),
- turns ``<form method="put|patch|delete">`` into a POST carrying a hidden ``_method``,
- injects the session's CSRF token into every form that is not a GET,
- prefixes element ids (and the references to them) so a fragment cannot clobber the
  shell's own ids.
"""

import re
from collections.abc import Callable
from contextvars import ContextVar
from html import escape
from urllib.parse import urljoin, urlsplit, urlunsplit

import nh3

METHOD_FIELD = "_method"
CSRF_FIELD = "csrf_token"
OVERRIDABLE_METHODS = ("PUT", "PATCH", "DELETE")
ID_PREFIX = "pv-"

ALLOWED_TAGS = {
    "a", "abbr", "article", "aside", "b", "blockquote", "br", "button", "caption", "cite",
    "code", "col", "colgroup", "data", "dd", "del", "details", "dfn", "div", "dl", "dt", "em",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "i", "img", "input", "ins", "kbd", "label", "legend", "li", "mark",
    "meter", "nav", "ol", "optgroup", "option", "output", "p", "pre", "progress", "q", "s",
    "samp", "section", "select", "small", "span", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "textarea", "tfoot", "th", "thead", "time", "tr", "u", "ul", "var", "wbr",
}  # fmt: skip
GLOBAL_ATTRIBUTES = {
    "id", "class", "title", "lang", "dir", "role", "hidden", "tabindex",
    "aria-label", "aria-labelledby", "aria-describedby", "aria-hidden", "aria-live",
    "aria-current", "aria-expanded", "aria-controls", "aria-invalid", "aria-required",
}  # fmt: skip
FIELD_ATTRIBUTES = {"name", "value", "disabled", "required", "autocomplete", "autofocus"}
ALLOWED_ATTRIBUTES = {
    "*": GLOBAL_ATTRIBUTES,
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height"},
    "form": {"action", "method", "novalidate"},
    "input": FIELD_ATTRIBUTES
    | {
        "type",
        "placeholder",
        "checked",
        "readonly",
        "min",
        "max",
        "step",
        "minlength",
        "maxlength",
        "pattern",
        "size",
        "multiple",
        "inputmode",
    },  # fmt: skip
    "button": FIELD_ATTRIBUTES | {"type"},
    "select": FIELD_ATTRIBUTES | {"multiple", "size"},
    "option": {"value", "selected", "disabled", "label"},
    "optgroup": {"label", "disabled"},
    "textarea": FIELD_ATTRIBUTES
    | {"rows", "cols", "placeholder", "readonly", "minlength", "maxlength"},  # fmt: skip
    "label": {"for"},
    "fieldset": {"disabled"},
    "output": {"for"},
    "td": {"colspan", "rowspan", "headers"},
    "th": {"colspan", "rowspan", "headers", "scope", "abbr"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "reversed"},
    "li": {"value"},
    "time": {"datetime"},
    "data": {"value"},
    "del": {"datetime"},
    "ins": {"datetime"},
    "details": {"open"},
    "meter": {"value", "min", "max", "low", "high", "optimum"},
    "progress": {"value", "max"},
}
URL_SCHEMES = {"http", "https", "mailto", "tel"}
URL_ATTRIBUTES = {("a", "href"), ("img", "src"), ("form", "action")}
ID_REFERENCES = {"for", "headers", "aria-labelledby", "aria-describedby", "aria-controls"}


# The attribute filter of the fragment being processed (this thread's, via a context variable):
# the cleaner is built once, because nh3 converts its allow-lists on every ``nh3.clean`` call
# (about as long as the cleaning itself) but takes the filter only at construction.
_attribute_filter: ContextVar[Callable[[str, str, str], str | None]] = ContextVar(
    "fragment_attribute_filter"
)


def _filter_attribute(tag: str, name: str, value: str) -> str | None:
    return _attribute_filter.get()(tag, name, value)


_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    clean_content_tags={"script", "style", "template", "noscript", "title"},
    generic_attribute_prefixes={"data-"},
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=URL_SCHEMES,
    strip_comments=True,
    link_rel="noopener noreferrer",
    attribute_filter=_filter_attribute,
)


def sanitize(html: str, attribute_filter: Callable[[str, str, str], str | None]) -> str:
    """Strip everything from plugin markup that could run script or escape the allow-list.

    ``attribute_filter`` sees each allowed attribute (after the URL scheme check) and returns
    its new value, or None to drop it.
    """
    reset = _attribute_filter.set(attribute_filter)
    try:
        return _CLEANER.clean(html)
    finally:
        _attribute_filter.reset(reset)


def proxy_prefix(plugin_id: str) -> str:
    return f"/plugin-proxy/{plugin_id}"


def rewrite_url(url: str, *, prefix: str, current_path: str, base_url: str) -> str:
    """Map a URL found in a fragment to the shell: plugin paths go through the proxy.

    ``/x`` is a path of the plugin (as in the manifest), ``x`` and ``?q`` resolve against
    the path being shown, ``#x`` points at a prefixed id, and an absolute URL under the
    plugin's ``base_url`` is mapped too; any other absolute URL is left alone.
    """
    url = url.strip()
    if url.startswith("#"):
        return "#" + ID_PREFIX + url[1:] if len(url) > 1 else url
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        plugin_path = path_under_base(url, base_url)
        if plugin_path is None:
            return url
        parts = urlsplit(plugin_path)
    elif not parts.path.startswith("/"):
        parts = urlsplit(urljoin(current_path or "/", url))
    path = remove_dot_segments(parts.path or "/")
    fragment = ID_PREFIX + parts.fragment if parts.fragment else ""
    return urlunsplit(("", "", prefix + path, parts.query, fragment))


def remove_dot_segments(path: str) -> str:
    """Resolve ``.`` and ``..`` so no path can climb out of the plugin's prefix."""
    out: list[str] = []
    segments = path.split("/")
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment not in (".", ""):
            out.append(segment)
    trailing = "/" if segments[-1] in ("", ".", "..") and out else ""
    return "/" + "/".join(out) + trailing


def path_under_base(url: str, base_url: str) -> str | None:
    """Return the plugin path of an absolute URL under ``base_url``, or None."""
    base = base_url.rstrip("/")
    if url == base:
        return "/"
    if url.startswith(base + "/") or url.startswith(base + "?"):
        rest = url[len(base) :]
        return rest if rest.startswith("/") else "/" + rest
    return None


def process(
    html: str,
    *,
    plugin_id: str,
    current_path: str,
    base_url: str,
    csrf_token: str,
    prefix: str | None = None,
) -> str:
    """Sanitize a plugin fragment and wire its links and forms to the core's proxy routes."""
    prefix = prefix or proxy_prefix(plugin_id)

    def url(value: str) -> str:
        return rewrite_url(value, prefix=prefix, current_path=current_path, base_url=base_url)

    def attribute(tag: str, name: str, value: str) -> str | None:
        # nh3 has already dropped URLs with schemes outside URL_SCHEMES before this runs,
        # and rewrite_url never turns an absolute URL into anything else.
        if (tag, name) in URL_ATTRIBUTES:
            return url(value)
        if name == "id":
            return ID_PREFIX + value
        if name in ID_REFERENCES:
            return " ".join(ID_PREFIX + ref for ref in value.split())
        if tag == "form" and name == "method":
            method = value.strip().upper()
            return method if method in ("POST", *OVERRIDABLE_METHODS) else "GET"
        if tag == "input" and name == "name" and value == CSRF_FIELD:
            return None  # only the core's own token may travel in that field
        return value

    clean = sanitize(html, attribute_filter=attribute)

    def form(match: re.Match) -> str:
        # nh3 escapes < > " & inside attribute values, so this parse of its output is exact.
        attrs = dict(ATTRIBUTE.findall(match.group(1)))
        method = attrs.pop("method", "") or "GET"
        hidden = []
        if method in OVERRIDABLE_METHODS:
            hidden.append(_hidden(METHOD_FIELD, method))
            method = "POST"
        if method == "POST":
            hidden.insert(0, _hidden(CSRF_FIELD, csrf_token))
        action = attrs.pop("action", "") or escape(url(current_path), quote=True)
        rest = "".join(
            f' {name}="{value}"' if value else f" {name}" for name, value in attrs.items()
        )
        return f'<form action="{action}" method="{method.lower()}"{rest}>' + "".join(hidden)

    return FORM_TAG.sub(form, clean)


FORM_TAG = re.compile(r"<form((?:\s[^>]*)?)>")
ATTRIBUTE = re.compile(r'\s([^\s="]+)(?:="([^"]*)")?')


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{escape(value, quote=True)}">'
