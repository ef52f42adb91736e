"""Check ``iri`` and ``iri-reference`` formats (SPEC §5) without rfc3987-syntax's import cost.

jsonschema asserts these two formats with ``rfc3987_syntax.is_valid_syntax``, imported when
jsonschema is. Importing rfc3987-syntax builds 39 Earley parsers from its grammar (~2.5 s of
CPU), and every process paid it at start: each gunicorn worker, each ``flask`` command. Of
those parsers jsonschema uses one. ``install()`` puts a stand-in for the module in
``sys.modules`` before jsonschema is imported: the same function over the same grammar file,
building that one parser on first use. Nothing else in the core imports rfc3987-syntax.
"""

import sys
import threading
import types
from importlib.util import find_spec
from pathlib import Path

MODULE = "rfc3987_syntax"
# The start rules rfc3987_syntax.syntax_helpers builds its shared parser with.
START_RULES = ["iri", "iri_reference", "absolute_iri"]

_lock = threading.Lock()
_parser = None


def grammar_path() -> Path | None:
    """Return the installed rfc3987-syntax grammar file, without importing the package."""
    spec = find_spec(MODULE)  # a stand-in already installed carries the package's spec
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "syntax_rfc3987.lark"
    return path if path.is_file() else None


def parser():
    """Return the one Earley parser, built on first use (what the library builds at import)."""
    global _parser
    with _lock:
        if _parser is None:
            from lark import Lark

            grammar = GRAMMAR.read_text(encoding="utf-8")
            _parser = Lark(grammar, start=START_RULES, parser="earley")
        return _parser


def is_valid_syntax(term: str, value: str) -> bool:
    """Say whether ``value`` parses as ``term`` (``iri``, ``iri_reference``, ``absolute_iri``)."""
    from lark import exceptions

    try:
        parser().parse(value, start=term)
    except exceptions.LarkError:
        return False
    return True


GRAMMAR = grammar_path()


def install() -> None:
    """Stand in for rfc3987_syntax unless it is absent or already imported."""
    if MODULE in sys.modules or GRAMMAR is None:
        return
    module = types.ModuleType(MODULE, __doc__)
    module.__spec__ = find_spec(MODULE)
    module.is_valid_syntax = is_valid_syntax
    sys.modules[MODULE] = module


install()
