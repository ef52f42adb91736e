"""Bound what a fragment can cost the sanitizer, in one linear pass before it parses (issue 11).

nh3's HTML parser (html5ever) spends time per element in proportion to how deep the element
sits (scope checks walk the stack of open elements), so 100k nested ``<div>``s took 25 s, and
misnested formatting tags make it *create* elements the markup never wrote (the "reconstruct
the active formatting elements" step: 19 KB became 400k elements). This module follows the
parts of the HTML parsing algorithm that decide depth and element count — the tokenizer's
tags, comments and raw text, void elements, end tags that are optional or ignored, scope
boundaries and the active formatting elements — and gives up as soon as a limit is passed,
so the scan itself is bounded by the input's length plus the element limit.

Where it cannot follow the parser exactly it errs towards counting more: from the first
``<svg>`` or ``<math>`` (foreign content, which the sanitizer drops anyway) or a ``<script>``
holding ``<!--`` on, every start tag counts as an element one level deeper and end tags are
ignored; those parts are refused only when elements × depth passes the same budget.
"""

import sys

from extframework.services.markup_rules import (
    ANY_SPECIAL,
    BLOCK,
    BUTTON,
    CELLS,
    CLASSED,
    CLASSES,
    CLOSES_P,
    COMMENT_END,
    FOREIGN,
    FORMATTING,
    HEADINGS,
    IGNORED,
    LIST,
    LIST_ITEM,
    MARKERS,
    MEMBERSHIP,
    NO_RECONSTRUCT,
    NOT_PLAIN,
    RAW_TEXT,
    RAW_TEXT_ENDS,
    ROW_PARTS,
    SCOPE,
    SCOPE_BOUNDARIES,
    SCOPED_END,
    SECTIONS,
    SPECIAL,
    START_TAG,
    TABLE,
    TABLE_PARTS,
    TAG,
    TOKEN,
    VOID,
)

MAX_ELEMENTS = 20_000
MAX_DEPTH = 128
ADOPTION_CLONES = 32
# Markup this short cannot cost nh3 much (the worst 2,048 characters found, reopened
# formatting, take it ~0.02 s), and the scan costs more than nh3 on small fragments.
UNSCANNED_CHARS = 2048


class TooComplex(Exception):
    """A fragment the sanitizer must not be given: which limit it passes."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(what, limit)
        self.what = what  # "elements" or "nesting depth"
        self.limit = limit

    def __str__(self) -> str:
        if self.what == "elements":
            return f"more than {self.limit} elements"
        return f"elements nested more than {self.limit} deep"


def check(
    html: str,
    *,
    max_elements: int = MAX_ELEMENTS,
    max_depth: int = MAX_DEPTH,
    unscanned_chars: int = UNSCANNED_CHARS,
) -> None:
    """Raise ``TooComplex`` if parsing ``html`` would build too many or too deep elements."""
    if len(html) > unscanned_chars:
        _Scan(max_elements, max_depth).run(html)


def measure(html: str) -> tuple[int, int]:
    """Return the (elements, deepest nesting) the scan counts for ``html``, without limits."""
    scan = _Scan(sys.maxsize, sys.maxsize)
    scan.run(html)
    return scan.elements, scan.deepest


class _Entry:
    """An active formatting element (HTML §13.2.4.3), or a marker when ``name`` is None."""

    __slots__ = ("name", "index", "level", "key")

    def __init__(self, name: str | None, index: int, level: int, key: str = "") -> None:
        self.name, self.index, self.level = name, index, level  # index -1: not on the stack
        self.key = key  # the tag as written: equal keys mean equal attributes


class _Scan:
    def __init__(self, max_elements: int, max_depth: int) -> None:
        self.max_elements, self.max_depth = max_elements, max_depth
        self.elements = 0
        self.stack: list[str] = []
        self.entry_of: list[_Entry | None] = []
        self.open: dict[str, list[int]] = {}
        self.classes: dict[str, list[int]] = {name: [] for name in CLASSES}
        self.formatting: list[_Entry] = []
        self.formatting_by_name: dict[str, list[_Entry]] = {}
        self.formatting_by_key: dict[str, list[_Entry]] = {}
        self.markers = 0
        self.off_stack = 0
        self.deepest = 0
        self.form_pointer = False
        self.marked: set[int] = set()  # stack indices of elements that put a marker

    # --- the stack of open elements --------------------------------------------------------

    def count(self, n: int = 1) -> None:
        self.elements += n
        if self.elements > self.max_elements:
            raise TooComplex("elements", self.max_elements)

    def push(self, name: str, entry: _Entry | None = None) -> None:
        self.elements += 1
        if self.elements > self.max_elements:
            raise TooComplex("elements", self.max_elements)
        index = len(self.stack)
        if index >= self.max_depth:
            raise TooComplex("nesting depth", self.max_depth)
        self.stack.append(name)
        if index >= self.deepest:
            self.deepest = index + 1
        self.entry_of.append(entry)
        indices = self.open.get(name)
        if indices is None:
            self.open[name] = [index]
        else:
            indices.append(index)
        if name in CLASSED:
            for cls in MEMBERSHIP[name]:
                self.classes[cls].append(index)
        if name in MARKERS and (name not in CELLS or self.last("table") >= 0):
            self.formatting.append(_Entry(None, index, self.markers))
            self.markers += 1
            self.marked.add(index)

    def pop(self) -> None:
        index = len(self.stack) - 1
        name = self.stack.pop()
        entry = self.entry_of.pop()
        self.open[name].pop()
        if name in CLASSED:
            for cls in MEMBERSHIP[name]:
                self.classes[cls].pop()
        if entry is not None and entry.name:
            entry.index = -1
            self.off_stack += 1
        if index in self.marked:
            self.marked.discard(index)
            self._clear_to_marker()

    def pop_to(self, index: int) -> None:
        """Pop every element from the top down to and including the one at ``index``."""
        while len(self.stack) > index:
            self.pop()

    def last(self, name: str) -> int:
        indices = self.open.get(name)
        return indices[-1] if indices else -1

    def top_of(self, cls: str) -> int:
        indices = self.classes[cls]
        return indices[-1] if indices else -1

    def in_scope(self, index: int, cls: str) -> bool:
        return index >= 0 and self.top_of(cls) <= index

    # --- active formatting elements --------------------------------------------------------

    def _clear_to_marker(self) -> None:
        while self.formatting:
            entry = self.formatting.pop()
            if entry.name is None:
                self.markers -= 1
                return
            if not entry.name:
                continue  # already removed
            self.formatting_by_name[entry.name].pop()
            self.formatting_by_key[entry.key].pop()
            if entry.index < 0:
                self.off_stack -= 1

    def add_formatting(self, name: str, tag: str) -> None:
        same = self.formatting_by_key.setdefault(tag, [])
        if len(same) >= 3 and same[-3].level == self.markers:
            self.remove_formatting(same[-3])  # the parser keeps at most three alike
        entry = _Entry(name, len(self.stack), self.markers, tag)
        self.push(name, entry)
        self.formatting.append(entry)
        self.formatting_by_name.setdefault(name, []).append(entry)
        same.append(entry)

    def remove_formatting(self, entry: _Entry) -> None:
        # An end tag removes the latest entry of its name; dropping any trailing removed
        # entries keeps every walk from the end of the list proportional to what it reopens.
        for entries in (self.formatting_by_name[entry.name], self.formatting_by_key[entry.key]):
            if entries[-1] is entry:
                entries.pop()
            else:
                entries.remove(entry)  # only for the three alike: a short walk
        if entry.index < 0:
            self.off_stack -= 1
        entry.name, entry.index = "", -1  # an element still open stays open, unlisted
        while self.formatting and self.formatting[-1].name == "":
            self.formatting.pop()

    def reconstruct(self) -> None:
        """Reopen formatting elements an end tag closed early, as the parser does before content."""
        if not self.off_stack:
            return
        start = len(self.formatting)
        while start > 0:
            entry = self.formatting[start - 1]
            if entry.name is None or entry.index >= 0:
                break
            start -= 1
        for entry in self.formatting[start:]:
            if entry.name:  # skip removed entries
                entry.index = len(self.stack)
                self.off_stack -= 1
                self.push(entry.name, entry)

    def latest_formatting(self, name: str) -> _Entry | None:
        entries = self.formatting_by_name.get(name)
        if entries and entries[-1].level == self.markers:
            return entries[-1]
        return None

    # --- tokens ----------------------------------------------------------------------------

    def start(self, name: str, tag: str = "") -> None:
        if name in IGNORED:
            return
        if name == "form":
            if self.form_pointer:
                return  # the parser drops a form start tag while its form pointer is set
            self.form_pointer = True
        if name in TABLE_PARTS and self.last("table") < 0 and self.last("template") < 0:
            return  # outside a table the parser drops these tags
        if name in ("select", "input") and self.in_scope(self.last("select"), SCOPE):
            self.pop_to(self.last("select"))  # these close an open select
            if name == "select":
                return
        if name == "table" and self.in_table_mode():
            self.pop_to(self.last("table"))
        if name in CLOSES_P:
            p = self.last("p")
            if self.in_scope(p, BUTTON):
                self.pop_to(p)
        if name == "li" or name in ("dd", "dt"):
            same = ("li",) if name == "li" else ("dd", "dt")
            index = max(self.last(n) for n in same)
            if self.in_scope(index, LIST_ITEM):
                self.pop_to(index)
        elif name in HEADINGS:
            if self.stack and self.stack[-1] in HEADINGS:
                self.pop()
        elif name in ("option", "optgroup"):
            closes = (
                ("option", "optgroup")
                if name == "optgroup" and self.last("select") >= 0
                else ("option",)
            )
            for closed in closes:
                if self.stack and self.stack[-1] == closed:
                    self.pop()
        elif name == "button" and self.in_scope(self.last("button"), SCOPE):
            self.pop_to(self.last("button"))
        elif name in ("td", "th", "tr") or name in SECTIONS or name in ("caption", "colgroup"):
            self.table_part(name)
        if name in ("a", "nobr"):
            entry = self.latest_formatting(name)
            if entry is not None and (name == "a" or self.in_scope(entry.index, SCOPE)):
                self.end_formatting(entry)
                if entry.name:
                    self.remove_formatting(entry)
        self.open_element(name, tag)

    def open_element(self, name: str, tag: str) -> None:
        if name in FORMATTING:
            self.reconstruct()
            self.add_formatting(name, tag)
        else:
            if name not in NO_RECONSTRUCT:
                self.reconstruct()
            if name in VOID:
                self.count()
            else:
                self.push(name)

    def in_row_or_section(self, name: str) -> bool:
        """Close what a cell or row start closes when its row or section is open: the usual case."""
        table = self.top_of(TABLE)
        if table < 0 or self.stack[table] != "table":
            return False
        parent = self.last("tr") if name != "tr" else max(self.last(n) for n in SECTIONS)
        if parent <= table:
            return False
        self.pop_to(parent + 1)
        return True

    def in_table_mode(self) -> bool:
        """Tell whether the parser is in a table but outside its cells (so it closes tables)."""
        table = self.last("table")
        return table >= 0 and table > max(self.last(n) for n in CELLS)

    def table_part(self, name: str) -> None:
        table = self.top_of(TABLE)
        if table < 0 or self.stack[table] != "table":
            return  # outside a table the parser ignores these tags; counting them is safe
        if name in ("td", "th"):
            row = self.last("tr")
            if row > table:
                self.pop_to(row + 1)
                return
            self.pop_to(table + 1)
            self.push("tbody")
            self.push("tr")
        elif name == "tr":
            section = max(self.last(n) for n in SECTIONS)
            if section > table:
                self.pop_to(section + 1)
            else:
                self.pop_to(table + 1)
                self.push("tbody")
        else:
            self.pop_to(table + 1)

    def end(self, name: str) -> None:
        if name in IGNORED:
            return
        if name == "br":
            self.reconstruct()
            self.count()
            return
        if name == "p":
            p = self.last("p")
            if self.in_scope(p, BUTTON):
                self.pop_to(p)
            else:
                self.push("p")  # the parser inserts an empty <p>
                self.pop()
            return
        if name in FORMATTING:
            entry = self.latest_formatting(name)
            if entry is not None:
                self.end_formatting(entry)
                return
        if name in HEADINGS:
            index = max(self.last(n) for n in HEADINGS)
            cls = SCOPE
        elif name == "li":
            index, cls = self.last(name), LIST
        elif name in ("td", "th", "tr", "caption", "table") or name in SECTIONS:
            table = self.last("table")
            index, cls = self.last(name), TABLE
            if table < 0 or index < table:
                return  # outside a table the parser ignores these end tags
        elif name == "form":
            self.form_pointer = False
            if self.stack and self.stack[-1] == "form":
                self.pop()
            return  # the parser takes a form out of the middle; keeping it counts deeper
        elif name in SPECIAL or name in SCOPE_BOUNDARIES:
            index, cls = self.last(name), SCOPE
        else:
            index, cls = self.last(name), ANY_SPECIAL
        if self.in_scope(index, cls):
            self.pop_to(index)

    def end_formatting(self, entry: _Entry) -> None:
        """The adoption agency, as far as depth goes: a simple close, or nothing."""
        if entry.index < 0:
            self.remove_formatting(entry)
        elif not self.in_scope(entry.index, SCOPE):
            return  # ignored by the parser
        elif self.top_of(ANY_SPECIAL) < entry.index:
            self.pop_to(entry.index)
            self.remove_formatting(entry)
        else:
            # The adoption agency moves elements without deepening the stack, but creates up
            # to 8 × (1 + 3) clones; counting that many and leaving everything open is safe.
            self.count(ADOPTION_CLONES)

    def run(self, html: str) -> None:
        pos, end = 0, len(html)
        while pos < end:
            token = TOKEN.search(html, pos)
            if token is None:
                if self.off_stack and end > pos:  # text, whitespace too, reopens formatting
                    self.reconstruct()
                return
            at = token.start()
            if self.off_stack and at > pos:
                self.reconstruct()
            leaf = token.group(1)
            if leaf is not None and self.leaf(leaf):
                pos = token.end()
                continue
            if leaf is not None:  # not a simple one after all: take its start tag alone
                token = TAG.match(html, at)
            name = token.group(3)
            if name is None:
                if token.group(4) is None:
                    return  # "<" and a letter, but no ">" ends the tag: the parser drops the rest
                pos = self.skip(html, at, token.group(4))
                if pos < 0:
                    return
                continue
            pos = token.end()
            name = name.lower()
            # The common cases first, with the rules of end() and start() spelled out.
            if token.group(2):
                if name not in NOT_PLAIN:  # "any other end tag"
                    index = self.last(name)
                    if index >= 0 and self.top_of(ANY_SPECIAL) <= index:
                        self.pop_to(index)
                elif name in SCOPED_END:
                    index = self.last(name)
                    if index >= 0 and self.top_of(SCOPE) <= index:
                        self.pop_to(index)
                elif name in ROW_PARTS:  # </td> </th> </tr> inside their table
                    index, table = self.last(name), self.last("table")
                    if 0 <= table < index and self.top_of(TABLE) <= index:
                        self.pop_to(index)
                else:
                    self.end(name)
            elif name not in NOT_PLAIN:
                if self.off_stack:
                    self.reconstruct()
                self.push(name)
            elif name in BLOCK:
                p = self.last("p")
                if p >= 0 and self.top_of(BUTTON) <= p:
                    self.pop_to(p)
                self.push(name)
            elif name in ROW_PARTS and self.in_row_or_section(name):
                self.push(name)
            elif name in RAW_TEXT:
                self.start(name)
                if self.last(name) >= 0:
                    self.pop_to(self.last(name))
                close = RAW_TEXT_ENDS[name].search(html, pos)
                if name == "script" and "<!--" in html[pos : close.start() if close else end]:
                    self.unfollowable(html, pos)
                    return
                if close is None:
                    return  # raw text to the end
                pos = close.start()
            else:
                self.start(name, token.group(0))
                if name in FOREIGN:
                    self.unfollowable(html, pos)
                    return
                if name == "plaintext":
                    return  # the rest is text

    def leaf(self, name: str) -> bool:
        """Count ``<name>text</name>`` at once when opening it changes nothing else; else False."""
        if name not in NOT_PLAIN or (name in FORMATTING and not self.formatting_by_name.get(name)):
            if self.off_stack:
                self.reconstruct()
        elif name in BLOCK and not self.off_stack:
            p = self.last("p")
            if p >= 0 and self.top_of(BUTTON) <= p:
                self.pop_to(p)
                if self.off_stack:  # closing the <p> closed formatting its text reopens
                    index = len(self.stack)
                    self.push(name)
                    self.reconstruct()
                    self.pop_to(index)
                    return True
        elif not (name in CELLS and name != "caption" and self.in_row_or_section(name)):
            return False
        self.elements += 1
        if self.elements > self.max_elements:
            raise TooComplex("elements", self.max_elements)
        depth = len(self.stack) + 1
        if depth > self.max_depth:
            raise TooComplex("nesting depth", self.max_depth)
        self.deepest = max(self.deepest, depth)
        return True

    def skip(self, html: str, at: int, what: str) -> int:
        """Skip a comment, doctype or bogus comment; -1 if it runs to the end."""
        if what == "!" and html.startswith("<!--", at):
            close = COMMENT_END.match(html, at + 4)
            return close.end() if close else -1
        if html.startswith("</>", at):
            return at + 3
        return html.find(">", at) + 1 or -1

    def unfollowable(self, html: str, pos: int) -> None:
        """Count every later start tag as one more element, one level deeper; ignore end tags."""
        rest = len(START_TAG.findall(html, pos))
        elements = self.elements + rest
        depth = len(self.stack) + rest
        self.elements, self.deepest = elements, max(self.deepest, depth)
        if elements > self.max_elements:
            raise TooComplex("elements", self.max_elements)
        if elements * depth > self.max_elements * self.max_depth:
            raise TooComplex("nesting depth", self.max_depth)
