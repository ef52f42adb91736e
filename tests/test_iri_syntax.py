"""`iri` and `iri-reference` stay asserted (SPEC §5), without rfc3987-syntax's start-up cost.

Importing rfc3987-syntax builds 39 Earley parsers (~2.5 s of CPU) in every process that imports
jsonschema; ``extframework.iri_syntax`` stands in for it with the one parser jsonschema uses.
"""

import json
import subprocess
import sys

import pytest

from extframework import iri_syntax

VALUES = [
    "https://example.com/a?b=c#d",
    "https://例え.jp/パス?q=値",
    "mailto:ada@example.com",
    "urn:isbn:0451450523",
    "http://[bad",
    "http://[2001:db8::1]:8080/",
    "http://exa mple.com/",
    "../notes/1",
    "//host/path",
    "#frag",
    "",
    "notes/ü",
    "http://example.com/%zz",
    "1http://example.com",
]
TERMS = ["iri", "iri_reference", "absolute_iri"]


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_process_importing_the_core_builds_no_iri_parser():
    loaded = run_python(
        "import sys, extframework, jsonschema\n"
        "from jsonschema import FormatChecker\n"
        "print(sorted(m for m in ('lark', 'rfc3987_syntax.syntax_helpers') if m in sys.modules))\n"
        "print('iri' in FormatChecker.checkers and 'iri-reference' in FormatChecker.checkers)\n"
    )
    assert loaded.splitlines() == ["[]", "True"]


def test_the_stand_in_answers_as_the_library_does():
    """The library itself, imported in a fresh interpreter without the core, is the reference."""
    reference = json.loads(
        run_python(
            "import json, sys\n"
            "from rfc3987_syntax import is_valid_syntax\n"
            f"values, terms = {VALUES!r}, {TERMS!r}\n"
            "print(json.dumps([[is_valid_syntax(t, v) for t in terms] for v in values]))\n"
        )
    )
    ours = [[iri_syntax.is_valid_syntax(term, value) for term in TERMS] for value in VALUES]
    assert ours == reference
    assert True in sum(ours, []) and False in sum(ours, [])


@pytest.mark.parametrize(
    ("name", "bad", "good"),
    [("iri", "http://[bad", "https://例え.jp/パス"), ("iri-reference", "http://[bad", "../ü/1")],
)
def test_the_storage_api_refuses_a_value_that_breaks_an_iri_format(
    make_storage_plugin, plugin_api, name, bad, good
):
    schema = {"type": "object", "properties": {"v": {"type": "string", "format": name}}}
    _, token = make_storage_plugin("acme-iris", [{"collection": "values", "schema": schema}])
    api = plugin_api(token)
    refused = api.create("values", {"v": bad})
    assert refused.status_code == 422, refused.get_json()
    [error] = refused.get_json()["errors"]
    assert error["pointer"] == "/v" and error["keyword"] == "format"
    assert api.create("values", {"v": good}).status_code == 201
