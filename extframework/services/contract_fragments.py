"""Say what the shell's sanitizer (``services/fragments``) would strip or rewrite in a fragment.

The contract checker's last probe: the fragment is read with the standard library's HTML
parser and held against the same allow-lists ``fragments`` gives nh3, and the result of
``fragments.process`` tells which forms the shell would make inert. Findings are warnings,
not failures: the shell shows the fragment, only without what it strips.
"""

from collections import Counter
from html.parser import HTMLParser

from extframework.services import fragments, markup, urls

CONTENT_DROPPED = {"script", "style", "template", "noscript", "title"}
MAX_LISTED = 12
# A whole page (an iframe view): the shell puts the content in its own document, whose head
# has its own title and charset, so losing these changes nothing the author meant to show.
DOCUMENT_TAGS = {"html", "head", "body", "meta", "title"}


class _Findings(HTMLParser):
    def __init__(self, prefix: str, current_path: str, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.prefix, self.current_path, self.base_url = prefix, current_path, base_url
        self.found: Counter[str] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in fragments.ALLOWED_TAGS:
            if tag in DOCUMENT_TAGS:
                return
            if tag in CONTENT_DROPPED:
                self.found[f"<{tag}> removed with its content"] += 1
            else:
                self.found[f"<{tag}> removed (its text stays)"] += 1
            return
        allowed = fragments.GLOBAL_ATTRIBUTES | fragments.ALLOWED_ATTRIBUTES.get(tag, set())
        for name, value in attrs:
            if name.startswith("on"):
                self.found[f"event handler {name} on <{tag}> removed"] += 1
            elif name not in allowed and not name.startswith("data-"):
                self.found[f"attribute {name} on <{tag}> removed"] += 1
            elif (tag, name) in fragments.URL_ATTRIBUTES and value is not None:
                self._url(tag, name, value)
            elif tag == "input" and name == "name" and value == fragments.CSRF_FIELD:
                self.found["an input named csrf_token removed (the core sets its own)"] += 1

    handle_startendtag = handle_starttag

    def _url(self, tag: str, name: str, value: str) -> None:
        cleaned = urls.clean(value)
        scheme = cleaned.split(":", 1)[0].lower() if ":" in cleaned.split("/", 1)[0] else ""
        if scheme and scheme not in fragments.URL_SCHEMES:
            self.found[f"{name} on <{tag}> with a {scheme}: URL removed"] += 1
            return
        mapped = fragments.rewrite_url(
            value, prefix=self.prefix, current_path=self.current_path, base_url=self.base_url
        )
        if mapped is None:
            self.found[f"{name} on <{tag}> that no browser can parse removed"] += 1


def review(html: str, *, plugin_id: str, base_url: str, current_path: str) -> tuple[str, str]:
    """Return ("pass" | "warn" | "fail", what the shell would do to ``html`` and what to change)."""
    try:
        markup.check(html)
    except markup.TooComplex as exc:
        return "fail", (
            f"The fragment has {exc}: the shell refuses to show it. Page long lists "
            "(the storage API's cursor) and flatten the nesting."
        )
    prefix = fragments.proxy_prefix(plugin_id)
    parser = _Findings(prefix, current_path, base_url)
    parser.feed(html)
    parser.close()
    found = parser.found
    processed = fragments.process(
        html, plugin_id=plugin_id, current_path=current_path, base_url=base_url, csrf_token="x"
    )
    inert = processed.count(fragments.REFUSED_ATTRIBUTE + "=")
    if inert:
        found["a form aimed outside the plugin made inert"] += inert
    if not found:
        return "pass", "The shell's sanitizer keeps the fragment as it is (links rewritten)."
    listed = [f"{what} ({n}x)" for what, n in found.most_common(MAX_LISTED)]
    more = len(found) - len(listed)
    return "warn", (
        "The shell's sanitizer would change this fragment: "
        + "; ".join(listed)
        + (f"; and {more} more" if more > 0 else "")
        + ". Script, inline styles and event handlers never run in the shell: use links, "
        "forms aimed at the plugin's own paths, and the shell's documented classes."
    )
