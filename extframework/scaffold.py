"""Write a new plugin from a template: ``flask --app app plugins new NAME --lang python|node``.

The templates are the files under ``extframework/scaffold/{lang}/``, copied as they are with
``__PLUGIN_ID__`` and ``__PLUGIN_NAME__`` (and the SDK's location, ``__SDK_PYTHON__`` and
``__SDK_NODE__``) replaced literally. The result registers itself with an enrolment key, shows
one menu entry, stores and lists documents, and carries a test that needs no core (issue 16).
"""

import json
import os
import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().with_name("scaffold")
LANGUAGES = ("python", "node")
REPO = Path(__file__).resolve().parents[1]
_SCHEMA = json.loads((Path(__file__).with_name("schemas") / "manifest.schema.json").read_text())
PLUGIN_ID = _SCHEMA["properties"]["plugin_id"]
# A display name goes into JSON, HTML and JavaScript string literals as it is: keep it to
# characters that need no escaping in any of them.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,_-]{0,79}")
SKIPPED = {"__pycache__", ".pytest_cache", "node_modules"}


class ScaffoldError(Exception):
    """The plugin cannot be written there or with that id; the message says what to change."""


def check_plugin_id(plugin_id: str) -> None:
    """Refuse an id the manifest's meta-schema would refuse, saying what a valid one looks like."""
    # fullmatch: under re.search the pattern's '$' would let a final newline through
    if not re.fullmatch(PLUGIN_ID["pattern"].strip("^$"), plugin_id) or (
        len(plugin_id) > PLUGIN_ID["maxLength"]
    ):
        raise ScaffoldError(
            f"{plugin_id!r} is not a valid plugin_id: use lowercase letters and digits, words "
            f"joined by single hyphens, starting with a letter, at most {PLUGIN_ID['maxLength']} "
            f"characters (pattern {PLUGIN_ID['pattern']}), for example 'acme-notes'"
        )


def display_name(plugin_id: str) -> str:
    """``acme-notes`` -> ``Acme Notes``."""
    return " ".join(word.capitalize() for word in plugin_id.split("-"))


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive on Windows
        return str(path)


def new_plugin(plugin_id: str, lang: str, target: Path, *, name: str | None = None) -> list[Path]:
    """Write a plugin into ``target`` (new or empty); return the files written."""
    check_plugin_id(plugin_id)
    if lang not in LANGUAGES:
        raise ScaffoldError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    name = display_name(plugin_id) if name is None else name
    if not NAME_PATTERN.fullmatch(name):
        raise ScaffoldError(
            f"{name!r} cannot be the display name: use 1 to 80 letters, digits, spaces and . , _ -"
        )
    target = Path(target).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(
            f"{target} exists and is not empty: choose another --dir, or remove it first"
        )
    replacements = {
        "__PLUGIN_ID__": plugin_id,
        "__PLUGIN_NAME__": name,
        "__SDK_PYTHON__": str(REPO / "sdk"),
        "__SDK_NODE__": _relative(REPO / "sdk-node", target),
    }
    source = TEMPLATES / lang
    written = []
    for template in sorted(source.rglob("*")):
        relative = template.relative_to(source)
        if template.is_dir() or SKIPPED.intersection(relative.parts):
            continue
        text = template.read_text()
        for placeholder, value in replacements.items():
            text = text.replace(placeholder, value)
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
