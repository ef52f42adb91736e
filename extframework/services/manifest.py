"""The manifest contract (SPEC §2): the published meta-schema plus the checks a schema cannot say.

``validate_manifest`` reports every problem at once, each as a field error: the JSON Pointer
of the offending value (``/menu_items/0/view/path``), the keyword it breaks and a message
(docs/errors.md), so a plugin author fixes a manifest in one round trip.
"""

import copy
import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import semver
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from extframework.errors import BadRequest, field_error, json_pointer
from extframework.services import schema_limits

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "manifest.schema.json"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
_DRAFT_2020_12_IDS = (DRAFT_2020_12, DRAFT_2020_12 + "#")
MAX_DEPTH = 64

PLUGIN_ID = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
COLLECTION = re.compile(r"[a-z][a-z0-9_]*")
ITEM_ID = re.compile(r"[a-z][a-z0-9_-]*")
PATH = re.compile(r"(/|(/([A-Za-z0-9_~-][A-Za-z0-9._~-]*|:[A-Za-z_][A-Za-z0-9_]*))+/?)")
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
HINTS = {
    PLUGIN_ID.pattern: "must be lowercase words joined by single hyphens, like acme-billing",
    COLLECTION.pattern: "must be lowercase letters, digits and '_', starting with a letter",
    ITEM_ID.pattern: "must be lowercase letters, digits, '_' and '-', starting with a letter",
    PATH.pattern: "must be a path like /invoices or /invoices/:id (no '.', '..', query or spaces)",
    FIELD.pattern: "must be a dotted field path like customer_id or meta.owner",
}

_DOCUMENT_SCHEMA_CHECKER = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)


@cache
def meta_schema() -> dict:
    """Return the manifest's JSON Schema, read once from the package."""
    return json.loads(SCHEMA_PATH.read_text())


@cache
def _manifest_checker() -> Draft202012Validator:
    return Draft202012Validator(meta_schema())


def validate_manifest(manifest: object, limits: schema_limits.Limits | None = None) -> dict:
    """Return a normalised copy of a valid manifest, or raise BadRequest listing every error.

    ``limits`` bounds what the manifest may declare (default: the running app's settings).
    """
    limits = limits or schema_limits.current()
    depth_error = _too_deep(manifest)
    if depth_error:
        raise BadRequest(
            "The manifest is not valid.", errors=[depth_error], kind="invalid-manifest"
        )
    too_large = schema_limits.manifest_size_problem(manifest, limits)
    if too_large:
        raise BadRequest(
            f"The manifest is too large: {too_large}.",
            errors=[_error([], "size", too_large)],
            kind="invalid-manifest",
        )
    errors = _schema_errors(manifest)
    if isinstance(manifest, dict):
        flagged = {e["pointer"] for e in errors}
        errors += [e for e in _semantic_errors(manifest, limits) if e["pointer"] not in flagged]
    if errors:
        errors.sort(key=lambda e: e["pointer"])
        raise BadRequest(
            f"The manifest is not valid: {len(errors)} error(s); see 'errors' "
            "(the meta-schema is at GET /api/registry/manifest-schema).",
            errors=errors,
            kind="invalid-manifest",
        )
    return normalise(manifest)


def normalise(manifest: dict) -> dict:
    """Fill the defaults the SPEC names, so the rest of the core reads one shape."""
    result = copy.deepcopy(manifest)
    result.setdefault("menu_items", [])
    result.setdefault("data_schemas", [])
    for item in result["menu_items"]:
        item["view"].setdefault("method", "GET")
        item["view"].setdefault("mode", "inline")
        item.setdefault("actions", [])
    for entry in result["data_schemas"]:
        entry.setdefault("indexes", [])
    return result


def base_url(manifest: dict) -> str:
    """Return the manifest's base URL without a trailing slash; paths are appended to it."""
    return manifest["base_url"].rstrip("/")


def _error(path: Iterable[object], keyword: str, message: str) -> dict:
    return field_error(path, keyword, message)


def _limit_keyword(path: list) -> str:
    """``regex`` for a pattern RE2 cannot run; ``cost`` for any other limit of schema_limits."""
    if path[-1:] == ["pattern"] or path[-2:-1] == ["patternProperties"]:
        return "regex"
    return "cost"


def _too_deep(value: object) -> dict | None:
    stack = [(value, 0, [])]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            return _error(path, "depth", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1, [*path, k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, depth + 1, [*path, i]) for i, v in enumerate(node))
    return None


def _schema_errors(manifest: object) -> list[dict]:
    errors: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for error in _manifest_checker().iter_errors(manifest):
        for entry in _describe(error):
            key = (entry["pointer"], entry["message"])
            if key not in seen:
                seen.add(key)
                errors.append(entry)
    return errors


def _describe(error: ValidationError) -> list[dict]:
    """Point required/unknown-field errors at the field itself rather than its parent."""
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [_error([*path, name], "required", "is required") for name in missing]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = [name for name in error.instance if name not in known]
        allowed = ", ".join(sorted(known))
        return [
            _error(
                [*path, name], "additionalProperties", f"is not a known field (known: {allowed})"
            )
            for name in extra
        ]
    if error.validator == "pattern":
        return [_error(path, "pattern", _pattern_hint(error.validator_value, error.instance))]
    return [_error(path, str(error.validator), error.message)]


def _pattern_hint(pattern: str, value: object) -> str:
    """Say what a pattern means instead of quoting the regular expression."""
    bare = pattern.removeprefix("^").removesuffix("$")
    if bare in HINTS:
        return f"{value!r} {HINTS[bare]}"
    if pattern == meta_schema()["properties"]["version"]["pattern"]:
        return f"{value!r} is not a semantic version like 1.2.0"
    if pattern == meta_schema()["properties"]["base_url"]["pattern"]:
        return f"{value!r} must be an absolute http:// or https:// URL without query or fragment"
    return f"{value!r} does not match {pattern}"


def _semantic_errors(manifest: dict, limits: schema_limits.Limits) -> list[dict]:
    errors: list[dict] = []
    _check_scalars(manifest, errors)
    _check_menus(manifest.get("menu_items"), errors)
    _check_collections(manifest.get("data_schemas"), limits, errors)
    errors += [
        _error(path, "cost", message)
        for path, message in schema_limits.quota_errors(manifest, limits)
    ]
    migration = manifest.get("migration")
    if isinstance(migration, dict):
        _check_pattern(["migration", "path"], migration.get("path"), PATH, errors)
    return errors


def _check_pattern(path: list, value: object, pattern: re.Pattern, errors: list[dict]) -> None:
    # The meta-schema's patterns run through re.search, where "$" also matches before a
    # trailing newline; fullmatch closes that gap.
    if isinstance(value, str) and not pattern.fullmatch(value):
        errors.append(_error(path, "pattern", _pattern_hint(pattern.pattern, value)))


def _check_scalars(manifest: dict, errors: list[dict]) -> None:
    _check_pattern(["plugin_id"], manifest.get("plugin_id"), PLUGIN_ID, errors)
    version = manifest.get("version")
    if isinstance(version, str) and not semver.Version.is_valid(version):
        errors.append(
            _error(["version"], "pattern", f"{version!r} is not a semantic version like 1.2.0")
        )
    url = manifest.get("base_url")
    if isinstance(url, str):
        problem = _url_problem(url)
        if problem:
            errors.append(_error(["base_url"], "format", problem))


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "must not carry a query or fragment"
    if port == 0:
        return "must not use port 0"
    if any(ch.isspace() for ch in url):
        return "must not contain whitespace"
    return None


def _check_menus(items: object, errors: list[dict]) -> None:
    if not isinstance(items, list):
        return
    menu_ids: dict[str, int] = {}
    routes: dict[tuple[str, str], str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        _check_unique(item.get("id"), ["menu_items", i, "id"], menu_ids, i, "menu item", errors)
        _check_pattern(["menu_items", i, "id"], item.get("id"), ITEM_ID, errors)
        view = item.get("view")
        if isinstance(view, dict):
            where = ["menu_items", i, "view", "path"]
            _check_pattern(where, view.get("path"), PATH, errors)
            _check_route("GET", view.get("path"), where, routes, errors)
        actions = item.get("actions")
        if not isinstance(actions, list):
            continue
        action_ids: dict[str, int] = {}
        for j, action in enumerate(actions):
            if not isinstance(action, dict):
                continue
            where = ["menu_items", i, "actions", j]
            _check_unique(action.get("id"), [*where, "id"], action_ids, j, "action", errors)
            _check_pattern([*where, "id"], action.get("id"), ITEM_ID, errors)
            _check_pattern([*where, "path"], action.get("path"), PATH, errors)
            method = action.get("method")
            if isinstance(method, str):
                _check_route(method, action.get("path"), [*where, "path"], routes, errors)


def _check_unique(
    value: object, path: list, seen: dict, position: int, what: str, errors: list[dict]
) -> None:
    if not isinstance(value, str):
        return
    if value in seen:
        errors.append(
            _error(path, "unique", f"duplicate {what} id {value!r} (first at index {seen[value]})")
        )
    else:
        seen[value] = position


def _check_route(
    method: str, path: object, where: list, routes: dict[tuple[str, str], str], errors: list[dict]
) -> None:
    if not isinstance(path, str):
        return
    # Paths differing only in parameter names would be the same route to the proxy.
    shape = "/".join(":" if s.startswith(":") else s for s in path.strip("/").split("/"))
    key = (method, shape)
    if key in routes:
        errors.append(
            _error(where, "unique", f"{method} {path} is already declared at {routes[key]}")
        )
    else:
        routes[key] = json_pointer(where)


def _check_collections(entries: object, limits: schema_limits.Limits, errors: list[dict]) -> None:
    if not isinstance(entries, list):
        return
    names: dict[str, int] = {}
    replaced: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        name = entry.get("collection")
        if isinstance(name, str):
            if name in names:
                errors.append(
                    _error(
                        ["data_schemas", i, "collection"],
                        "unique",
                        f"duplicate collection {name!r} (first at index {names[name]})",
                    )
                )
            else:
                names[name] = i
        _check_pattern(["data_schemas", i, "collection"], name, COLLECTION, errors)
        source = entry.get("replaces")
        if isinstance(source, str):
            _check_pattern(["data_schemas", i, "replaces"], source, COLLECTION, errors)
            if source in replaced:
                errors.append(
                    _error(
                        ["data_schemas", i, "replaces"],
                        "unique",
                        f"collection {source!r} is already replaced at index {replaced[source]}",
                    )
                )
            replaced[source] = i
        schema = entry.get("schema")
        if isinstance(schema, dict):
            where = ["data_schemas", i, "schema"]
            schema_errors = _document_schema_errors(schema, where)
            if not schema_errors:  # the cost checks assume a well-formed, local-only schema
                schema_errors = [
                    _error([*where, *path], _limit_keyword(path), message)
                    for path, message in schema_limits.schema_errors(str(name), schema, limits)
                ]
            errors += schema_errors
        _check_indexes(entry.get("indexes"), i, errors)
    for source, i in replaced.items():
        if source in names:
            errors.append(
                _error(
                    ["data_schemas", i, "replaces"],
                    "renames",
                    f"{source!r} is still declared as a collection; a renamed collection "
                    "must not keep its old name",
                )
            )


def _check_indexes(indexes: object, i: int, errors: list[dict]) -> None:
    if not isinstance(indexes, list):
        return
    seen: dict[tuple, int] = {}
    for k, spec in enumerate(indexes):
        fields = spec.get("fields") if isinstance(spec, dict) else None
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            continue
        for n, field in enumerate(fields):
            _check_pattern(["data_schemas", i, "indexes", k, "fields", n], field, FIELD, errors)
        key = tuple(fields)
        if key in seen:
            errors.append(
                _error(
                    ["data_schemas", i, "indexes", k],
                    "unique",
                    f"duplicate index on {list(key)} (first at index {seen[key]})",
                )
            )
        else:
            seen[key] = k


def _document_schema_errors(schema: dict, where: list) -> list[dict]:
    """Check an embedded schema against the Draft 2020-12 metaschema and the core's limits."""
    errors = []
    declared = schema.get("$schema")
    if declared is not None and declared not in _DRAFT_2020_12_IDS:
        errors.append(
            _error(
                [*where, "$schema"],
                "const",
                f"the core validates with Draft 2020-12 ({DRAFT_2020_12})",
            )
        )
    for error in _DOCUMENT_SCHEMA_CHECKER.iter_errors(schema):
        errors.append(_error([*where, *error.absolute_path], str(error.validator), error.message))
    errors += _reference_errors(schema, where)
    return errors


def _reference_errors(schema: dict, where: list) -> list[dict]:
    # The validator would fetch a remote $ref over the network on first use: a plugin could
    # make the core request any URL. Only references inside the schema itself are allowed.
    errors = []
    stack: list[tuple[object, list]] = [(schema, where)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    if not value.startswith("#"):
                        errors.append(
                            _error(
                                [*path, key], "ref", "only local references ('#...') are allowed"
                            )
                        )
                elif key == "$id" and isinstance(value, str):
                    errors.append(
                        _error([*path, key], "id", "$id is not allowed in a collection schema")
                    )
                elif key == "$schema" and path != where and value not in _DRAFT_2020_12_IDS:
                    # jsonschema would validate such a subschema with a plain validator: no
                    # RE2, no budget (schema_validation._evolve).
                    errors.append(
                        _error(
                            [*path, key],
                            "const",
                            f"the core validates every subschema with Draft 2020-12 "
                            f"({DRAFT_2020_12})",
                        )
                    )
                else:
                    stack.append((value, [*path, key]))
        elif isinstance(node, list):
            stack.extend((value, [*path, n]) for n, value in enumerate(node))
    return errors
