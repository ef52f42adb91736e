"""What the HTML parsing algorithm (WHATWG HTML §13.2) does per element name, for ``markup``.

Only the rules that decide how many elements the parser builds and how deep they nest.
"""

import re


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


VOID = _names(
    "area base basefont bgsound br col embed hr image img input keygen link meta param source"
    " track wbr"
)
RAW_TEXT = _names("script style xmp iframe noembed noframes noscript textarea title")
FOREIGN = frozenset(("svg", "math"))
IGNORED = frozenset(("html", "body", "head", "frameset"))
FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
MARKERS = _names("applet caption marquee object td template th")
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
SCOPE_BOUNDARIES = _names(
    "applet caption html table td th marquee object template foreignobject desc mi mo mn ms"
    " mtext annotation-xml select"
)
SPECIAL = _names(
    "address applet area article aside base basefont bgsound blockquote body br button caption"
    " center col colgroup dd details dir div dl dt embed fieldset figcaption figure footer form"
    " frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html iframe img input keygen li"
    " link listing main marquee menu meta nav noembed noframes noscript object ol p param"
    " plaintext pre script search section select source style summary table tbody td template"
    " textarea tfoot th thead title tr track ul wbr xmp"
)
CLOSES_P = _names(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption"
    " figure footer header hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5"
    " h6 pre listing form li dd dt plaintext table hr xmp"
)
SECTIONS = ("tbody", "thead", "tfoot")
# Start tags before which the parser does not reopen closed formatting elements.
NO_RECONSTRUCT = CLOSES_P | _names(
    "table caption colgroup col tbody td tfoot th thead tr script style title noframes template"
    " base basefont bgsound link meta textarea iframe noembed noscript param source track frame"
)

# Boundaries past which an open element is not "in scope" for a given rule (HTML §13.2.4.2).
SCOPE = "scope"
BUTTON = "button"
LIST = "list"
TABLE = "table"
ANY_SPECIAL = "special"
LIST_ITEM = "list-item"  # special elements but address, div and p: an <li> closes across these
CLASSES = {
    SCOPE: SCOPE_BOUNDARIES,
    BUTTON: SCOPE_BOUNDARIES | {"button"},
    LIST: SCOPE_BOUNDARIES | {"ol", "ul"},
    TABLE: frozenset(("html", "table", "template")),
    ANY_SPECIAL: SPECIAL | SCOPE_BOUNDARIES,
    LIST_ITEM: (SPECIAL | SCOPE_BOUNDARIES) - {"address", "div", "p"},
}

# The next piece of markup: a tag as the tokenizer reads it (attribute values in quotes may
# hold ">", a quote anywhere else is part of a name or value; possessive, so it never
# backtracks), else "<!", "<?" or "</" + non-letter (comments), else "<" + letter with no end.
_ATTRIBUTES = r"""(?:[\t\n\f\r /]++
      |[^\t\n\f\r />][^\t\n\f\r />=]*+
       (?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:"[^"]*+"|'[^']*+'|[^\t\n\f\r >]*+))?+
    )*+>"""
TOKEN = re.compile(
    r"""<(?:([a-z][a-z0-9]*+)"""  # 1: a leaf, an element holding only text and closed at once
    + _ATTRIBUTES
    + r"""[^<]*+</\1>
    |(/?)([A-Za-z][^\t\n\f\r />]*+)"""  # 2, 3: a start or end tag
    + _ATTRIBUTES
    + r"""
    |([!?]|/(?![A-Za-z]))|/?(?=[A-Za-z]))""",  # 4: a comment or bogus comment; else no end
    re.VERBOSE,
)
# A start or end tag alone, with TOKEN's group numbers.
TAG = re.compile(r"""<(?:(?!)()|(/?)([A-Za-z][^\t\n\f\r />]*+)""" + _ATTRIBUTES + ")", re.VERBOSE)
COMMENT_END = re.compile(r"-?>|.*?--!?>", re.DOTALL)
START_TAG = re.compile(r"<[A-Za-z]")
RAW_TEXT_ENDS = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in RAW_TEXT}

CELLS = ("td", "th", "caption")
ROW_PARTS = frozenset(("td", "th", "tr"))
TABLE_PARTS = frozenset(("td", "th", "tr", "caption", "colgroup", *SECTIONS))
CLASSED = frozenset().union(*CLASSES.values())
MEMBERSHIP = {n: tuple(c for c, names in CLASSES.items() if n in names) for n in CLASSED}
# Start tags whose only rule is closing an open <p>.
BLOCK = CLOSES_P - {"li", "dd", "dt", "table", "form", "plaintext", "hr", "xmp", *HEADINGS}
# End tags whose only rule is: close the element if it is in scope.
SCOPED_END = (
    (SPECIAL | SCOPE_BOUNDARIES)
    - FORMATTING
    - IGNORED
    - TABLE_PARTS
    - {"p", "li", "br", "form", "table", *HEADINGS}
)
# Names with no rule of their own (span, label, ...): the common case takes a short path.
NOT_PLAIN = (
    CLASSED
    | VOID
    | RAW_TEXT
    | FOREIGN
    | IGNORED
    | FORMATTING
    | MARKERS
    | CLOSES_P
    | SPECIAL
    | NO_RECONSTRUCT
    | TABLE_PARTS
    | {"a", "nobr", "button", "form", "input", "option", "optgroup", "select", "table"}
    | {"p", "br", "li", "dd", "dt", "plaintext", *HEADINGS}
)
