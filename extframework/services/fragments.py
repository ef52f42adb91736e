"""Make a plugin's HTML safe to place in the shell (SPEC §8).

``nh3`` (ammonia) sanitizes against an allow-list: no script, no style, no event-handler
attributes, no URL schemes but http, https, mailto and tel. Its attribute filter and one
pass over the form tags of its (well-formed, escaped) output then

- reads links, form actions and image sources the way browsers do (``services/urls``) and
  rewrites those that point into the plugin to the core's proxy routes
  (``/plugin-proxy/<plugin_id>/...``),
- turns ``<form method="put|patch|delete">`` into a POST carrying a hidden ``_method``,
- injects the session's CSRF token into every non-GET form whose action stays under the
  plugin's own prefix, and turns every other form into an inert ``<div>`` (issue 11: a
  form aimed at the console would have made an operator's click the plugin's deputy),
- prefixes element ids (and the references to them) so a fragment cannot clobber the
  shell's own ids.
"""

import functools
import logging
import re
from collections.abc import Callable
from contextvars import ContextVar
from html import escape, unescape

import nh3

from extframework.services import urls

log = logging.getLogger(__name__)

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


def rewrite_url(url: str, *, prefix: str, current_path: str, base_url: str) -> str | None:
    """Map a URL found in a fragment to the shell (``_rewrite``), remembering short ones.

    A view's links mostly repeat from one request to the next (and between users); mapping
    one costs ~2,000 instructions even on the fast path. The answer depends on the four
    strings only, so up to 4096 of them are kept per process (issue 14).
    """
    if len(url) > MAX_REMEMBERED_URL:
        return _rewrite(url, prefix, current_path, base_url)
    return _remembered_rewrite(url, prefix, current_path, base_url)


MAX_REMEMBERED_URL = 512  # longer URLs are rare and would make the cache costly to hold


def _rewrite(url: str, prefix: str, current_path: str, base_url: str) -> str | None:
    """Map a URL found in a fragment to the shell: plugin paths go through the proxy.

    ``/x`` is a path of the plugin (as in the manifest), ``x`` and ``?q`` resolve against
    the path being shown, ``#x`` points at a prefixed id, and an absolute URL under the
    plugin's ``base_url`` is mapped too; any other absolute URL comes back as the browser
    would read it. Every URL is read the browser's way first (``services/urls``), so a
    mapped URL always stays under ``prefix``. None: the browser could not parse it either.
    """
    url = urls.clean(url)
    if url.startswith("#"):
        return "#" + ID_PREFIX + url[1:] if len(url) > 1 else url
    path = urls.plugin_path(url, current_path=current_path, base_url=base_url)
    if path is not None:
        return shell_url(path, prefix)
    resolved = urls.resolve(url, urls.PLUGIN_SPACE + (current_path or "/"))
    return resolved.href if resolved else None


_remembered_rewrite = functools.lru_cache(maxsize=4096)(_rewrite)


def shell_url(plugin_path: str, prefix: str) -> str:
    """Put a normalised plugin path (path, query, fragment) under the shell's prefix."""
    path, hash_mark, fragment = plugin_path.partition("#")
    return prefix + path + ("#" + ID_PREFIX + fragment if fragment else hash_mark)


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

    def url(value: str) -> str | None:
        return rewrite_url(value, prefix=prefix, current_path=current_path, base_url=base_url)

    def attribute(tag: str, name: str, value: str) -> str | None:
        # nh3 has already dropped URLs with schemes outside URL_SCHEMES before this runs.
        if (tag, name) == ("form", "action"):
            # Kept even when unparseable, so the form pass below refuses the form by its action.
            return url(value) or value
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
        if name == REFUSED_ATTRIBUTE:
            return None  # only the core marks a refused form
        return value

    clean = sanitize(html, attribute_filter=attribute)
    refused_forms: list[bool] = []

    def form(match: re.Match) -> str:
        if match.group(0) == "</form>":
            return "</div>" if refused_forms and refused_forms.pop() else "</form>"
        # nh3 escapes < > " & inside attribute values, so this parse of its output is exact.
        attrs = dict(ATTRIBUTE.findall(match.group(1)))
        method = attrs.pop("method", "") or "GET"
        action = attrs.pop("action", "") or escape(url(current_path) or "", quote=True)
        if not urls.within(unescape(action), prefix):
            # A form aimed anywhere but this plugin would make the person's click (and the
            # core's CSRF token) serve someone else: it becomes an inert container (issue 11).
            refused_forms.append(True)
            log.warning("plugin %s: refused a form aimed at %r", plugin_id, unescape(action))
            attrs.pop("novalidate", None)
            return f'<div {REFUSED_ATTRIBUTE}="{action}"{_attributes(attrs)}>'
        refused_forms.append(False)
        hidden = []
        if method in OVERRIDABLE_METHODS:
            hidden.append(_hidden(METHOD_FIELD, method))
            method = "POST"
        if method == "POST":
            hidden.insert(0, _hidden(CSRF_FIELD, csrf_token))
        return f'<form action="{action}" method="{method.lower()}"{_attributes(attrs)}>' + "".join(
            hidden
        )

    return FORM_TAG.sub(form, clean)


REFUSED_ATTRIBUTE = "data-refused-action"
FORM_TAG = re.compile(r"<form((?:\s[^>]*)?)>|</form>")
ATTRIBUTE = re.compile(r'\s([^\s="]+)(?:="([^"]*)")?')


def _attributes(attrs: dict[str, str]) -> str:
    return "".join(f' {name}="{value}"' if value else f" {name}" for name, value in attrs.items())


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{escape(value, quote=True)}">'
