"""Compare two versions of a plugin's collections and classify every change per SPEC §7.

Pure functions: no database, no Flask. A change is breaking when an old document could fail
the new schema; anything this module cannot classify with certainty is breaking too.
See docs/schema-diff.md for the classification table.
"""

import json
import re
from dataclasses import dataclass
from fractions import Fraction

from extframework.errors import BadRequest, field_error


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


COMPATIBLE_KINDS = _words(
    """property_added enum_widened index_added index_removed collection_added
    constraint_relaxed"""
)
BREAKING_KINDS = _words(
    """property_removed property_required type_changed type_narrowed enum_narrowed
    constraint_tightened collection_removed collection_renamed unclassified"""
)

# Keywords that never change which documents validate.
ANNOTATIONS = _words("title description default examples $comment deprecated readOnly writeOnly")
# Where subschemas live, so that normalising walks schemas and never data such as a const.
SCHEMA_KEYWORDS = _words(
    """items additionalProperties additionalItems not if then else contains propertyNames
    unevaluatedProperties unevaluatedItems contentSchema"""
)
SCHEMA_LIST_KEYWORDS = _words("allOf anyOf oneOf prefixItems items")
SCHEMA_MAP_KEYWORDS = _words("properties patternProperties $defs definitions dependentSchemas")
UNORDERED_KEYWORDS = _words("allOf anyOf oneOf enum required type")
LOWER_BOUNDS = _words("minimum exclusiveMinimum minLength minItems minProperties minContains")
UPPER_BOUNDS = _words("maximum exclusiveMaximum maxLength maxItems maxProperties maxContains")
ALL_TYPES = _words("null boolean object array number string")
# Keywords compared together with the keyword they are mapped to.
GROUPED = {"required": "properties", "const": "enum"}
# Values equal to the keyword's default, dropped so that spelling the default out is no change.
DEFAULTS = {"uniqueItems": False, "minLength": 0, "minItems": 0, "minProperties": 0}
PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Change:
    """One classified difference between an old and a new collection definition."""

    collection: str
    path: str
    kind: str
    breaking: bool
    old: object
    new: object

    def to_dict(self) -> dict:
        """Return the change as the JSON object of a 409 diff entry."""
        return {
            "collection": self.collection,
            "path": self.path,
            "kind": self.kind,
            "breaking": self.breaking,
            "old": _plain(self.old),
            "new": _plain(self.new),
        }


def diff_schemas(collection: str, old: dict, new: dict) -> list[Change]:
    """List every change between two versions of one collection's JSON Schema."""
    changes: list[Change] = []
    _diff_node(collection, "$", _normalize(old), _normalize(new), changes)
    return changes


def diff_collections(
    old: list[dict], new: list[dict], *, renames: dict[str, str] | None = None
) -> list[Change]:
    """List every change between two manifests' ``data_schemas``; renames map new name -> old."""
    old_by = {entry["collection"]: entry for entry in old}
    new_by = {entry["collection"]: entry for entry in new}
    renames = dict(renames or {})
    _check_renames(old_by, new_by, renames)
    replaced = set(renames.values())
    changes: list[Change] = []
    for name in sorted(old_by.keys() - new_by.keys() - replaced):
        changes.append(_change(name, "$", "collection_removed", old_by[name].get("schema"), None))
    for name in sorted(new_by):
        entry = new_by[name]
        source = renames.get(name, name if name in old_by else None)
        if source is None:
            changes.append(_change(name, "$", "collection_added", None, entry.get("schema")))
            continue
        if source != name:
            changes.append(_change(name, "$", "collection_renamed", source, name))
        changes += diff_schemas(name, old_by[source].get("schema", {}), entry.get("schema", {}))
        changes += _diff_indexes(name, old_by[source].get("indexes"), entry.get("indexes"))
    return changes


def breaking_changes(changes: list[Change]) -> list[Change]:
    """Keep only the changes that need a migration handler."""
    return [change for change in changes if change.breaking]


def _change(collection: str, path: str, kind: str, old: object, new: object) -> Change:
    return Change(collection, path, kind, kind in BREAKING_KINDS, old, new)


def _check_renames(old_by: dict, new_by: dict, renames: dict[str, str]) -> None:
    """Refuse a rename that does not turn one old collection into one new collection."""
    problems = []
    if len(set(renames.values())) != len(renames):
        problems.append("two new collections cannot replace the same old collection")
    for new_name, old_name in sorted(renames.items()):
        if new_name not in new_by:
            problems.append(f"renamed collection {new_name!r} is not in the new manifest")
        if old_name not in old_by:
            problems.append(f"replaced collection {old_name!r} is not in the old manifest")
        if new_name != old_name and (new_name in old_by or old_name in new_by):
            problems.append(f"{new_name!r} cannot replace {old_name!r}: both names exist")
    if problems:
        raise BadRequest(
            "The collection renames do not match the manifests.",
            errors=[field_error(["data_schemas"], "renames", problem) for problem in problems],
            kind="invalid-manifest",
        )


def _diff_indexes(collection: str, old: list | None, new: list | None) -> list[Change]:
    old_by = {_canon(index): index for index in old or []}
    new_by = {_canon(index): index for index in new or []}
    changes = []
    for key in sorted(old_by.keys() - new_by.keys()):
        changes.append(_change(collection, "$", "index_removed", old_by[key], None))
    for key in sorted(new_by.keys() - old_by.keys()):
        index = new_by[key]
        # Only a plain index is known to be harmless; an option such as "unique" could fail.
        kind = "index_added" if isinstance(index, dict) and set(index) <= {"fields"} else None
        changes.append(_change(collection, "$", kind or "unclassified", None, index))
    return changes


def _diff_node(collection: str, path: str, old: object, new: object, out: list[Change]) -> None:
    if _canon(old) == _canon(new):
        return
    old = {} if old is True else old
    new = {} if new is True else new
    if old is False:
        out.append(_change(collection, path, "constraint_relaxed", old, new))
        return
    if not isinstance(old, dict) or not isinstance(new, dict):
        out.append(_change(collection, path, "unclassified", old, new))
        return
    for keyword in sorted({GROUPED.get(k, k) for k in old.keys() | new.keys()}):
        members = (keyword, *(k for k, group in GROUPED.items() if group == keyword))
        if any(_canon(old.get(k)) != _canon(new.get(k)) for k in members):
            _diff_keyword(collection, path, keyword, old, new, out)


def _diff_keyword(
    collection: str, path: str, keyword: str, old: dict, new: dict, out: list[Change]
) -> None:
    o, n = old.get(keyword), new.get(keyword)
    if keyword == "type":
        _diff_type(collection, path, old, new, out)
    elif keyword == "enum":
        _diff_enum(collection, path, old, new, out)
    elif keyword == "properties":
        _diff_properties(collection, path, old, new, out)
    elif keyword == "additionalProperties":
        _diff_node(collection, path + ".*", _schema(o), _schema(n), out)
    elif keyword == "items" and not isinstance(o, list) and not isinstance(n, list):
        _diff_node(collection, path + "[*]", _schema(o), _schema(n), out)
    else:
        kind = _constraint_kind(keyword, o, n)
        out.append(
            _change(collection, path, kind, _fragment(old, keyword), _fragment(new, keyword))
        )


def _constraint_kind(keyword: str, o: object, n: object) -> str:
    """Classify a change of one assertion keyword; unknown keywords are unclassified."""
    if keyword in LOWER_BOUNDS or keyword in UPPER_BOUNDS or keyword == "multipleOf":
        if n is None:
            return "constraint_relaxed"
        if o is None:
            return "constraint_tightened"
        if not (_is_number(o) and _is_number(n)):
            return "unclassified"  # e.g. draft-4 boolean exclusiveMinimum
        if keyword == "multipleOf":
            if n <= 0:
                return "unclassified"
            whole = (Fraction(str(o)) / Fraction(str(n))).denominator == 1
            return "constraint_relaxed" if whole else "constraint_tightened"
        tightened = n > o if keyword in LOWER_BOUNDS else n < o
        return "constraint_tightened" if tightened else "constraint_relaxed"
    if keyword == "uniqueItems" and isinstance(o, bool | None) and isinstance(n, bool | None):
        return "constraint_tightened" if n else "constraint_relaxed"
    if keyword in ("pattern", "format") and n is None:
        return "constraint_relaxed"
    if keyword == "format" and o is None:
        return "constraint_tightened"
    return "unclassified"


def _diff_type(collection: str, path: str, old: dict, new: dict, out: list[Change]) -> None:
    old_types, new_types = _types(old), _types(new)
    widened = all(_accepts(new_types, t) for t in old_types)
    narrowed = all(_accepts(old_types, t) for t in new_types)
    if widened and narrowed:
        return
    kind = "constraint_relaxed" if widened else "type_narrowed" if narrowed else "type_changed"
    out.append(_change(collection, path, kind, _fragment(old, "type"), _fragment(new, "type")))


def _types(schema: dict) -> set[str]:
    value = schema.get("type")
    if value is None:
        return set(ALL_TYPES)
    return {value} if isinstance(value, str) else set(value)


def _accepts(types: set[str], name: str) -> bool:
    return name in types or (name == "integer" and "number" in types)


def _diff_enum(collection: str, path: str, old: dict, new: dict, out: list[Change]) -> None:
    old_values, new_values = _allowed(old), _allowed(new)
    if old_values == new_values:
        return
    if old_values is None:
        kind = "type_narrowed"  # SPEC §7: a string becoming an enum is a narrowed type
    elif new_values is None or new_values >= old_values:
        kind = "enum_widened"
    else:
        kind = "enum_narrowed"
    old_part = {k: old[k] for k in ("enum", "const") if k in old} or None
    new_part = {k: new[k] for k in ("enum", "const") if k in new} or None
    out.append(_change(collection, path, kind, old_part, new_part))


def _allowed(schema: dict) -> set[str] | None:
    values = None
    if "enum" in schema:
        values = {_canon(v) for v in schema["enum"]}
    if "const" in schema:
        const = {_canon(schema["const"])}
        values = const if values is None else values & const
    return values


def _diff_properties(collection: str, path: str, old: dict, new: dict, out: list[Change]) -> None:
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_req, new_req = old.get("required", []), new.get("required", [])
    if not all(isinstance(v, dict) for v in (old_props, new_props)) or not all(
        isinstance(v, list) for v in (old_req, new_req)
    ):
        out.append(_change(collection, path, "unclassified", old, new))
        return
    for name in sorted(old_props.keys() | new_props.keys()):
        where = _join(path, name)
        if name not in new_props:
            out.append(_change(collection, where, "property_removed", old_props[name], None))
        elif name not in old_props:
            kind = "property_required" if name in new_req else "property_added"
            out.append(_change(collection, where, kind, None, new_props[name]))
        else:
            _diff_node(collection, where, old_props[name], new_props[name], out)
    old_part, new_part = _fragment(old, "required"), _fragment(new, "required")
    for name in sorted(set(new_req) - set(old_req)):
        if name in old_props or name not in new_props:
            out.append(
                _change(collection, _join(path, name), "property_required", old_part, new_part)
            )
    for name in sorted(set(old_req) - set(new_req) - (old_props.keys() - new_props.keys())):
        out.append(_change(collection, _join(path, name), "constraint_relaxed", old_part, new_part))


def _normalize(schema: object) -> object:
    """Drop annotations and sort order-free arrays so equal schemas compare equal."""
    if not isinstance(schema, dict):
        return schema
    result = {}
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS or (
            keyword in DEFAULTS and _canon(value) == _canon(DEFAULTS[keyword])
        ):
            continue
        if keyword in SCHEMA_KEYWORDS and isinstance(value, dict | bool):
            value = _normalize(value)
        elif keyword in SCHEMA_LIST_KEYWORDS and isinstance(value, list):
            value = [_normalize(item) for item in value]
        elif keyword in SCHEMA_MAP_KEYWORDS and isinstance(value, dict):
            value = {name: _normalize(sub) for name, sub in value.items()}
        if keyword in UNORDERED_KEYWORDS and isinstance(value, list):
            unique = {_canon(item): item for item in value}
            value = [unique[key] for key in sorted(unique)]
        result[keyword] = value
    return result


def _schema(value: object) -> object:
    return True if value is None else value


def _fragment(schema: dict, keyword: str) -> dict | None:
    return {keyword: schema[keyword]} if keyword in schema else None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if PLAIN_NAME.match(name) else f"{path}[{json.dumps(name)}]"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain(value: object) -> object:
    """Return a JSON value with integral floats as ints, since JSON Schema treats 1.0 as 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _canon(value: object) -> str:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))
