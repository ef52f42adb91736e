"""What a collection schema may cost, and what one plugin may declare (issue 11).

Every collection schema passes ``schema_errors`` at registration and at update, before
anything is stored: its ``$ref``s resolve inside the schema and form no cycle; with every
``$ref`` inlined it stays under a node count and a depth (counted with memoisation, never by
expanding); it holds a bounded number of ``$ref``s and bytes; and every ``pattern`` and
``patternProperties`` key compiles with RE2, the linear-time engine validation uses.

The limits are settings (``Limits``). A service reads them from the app's configuration when
it runs inside one, and otherwise uses the defaults, so the registry and storage services
keep their signatures.
"""

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from urllib.parse import unquote

import re2
from flask import current_app, has_app_context

from extframework.config import DEFAULTS

# Draft 2020-12 keywords whose value is a schema, a list of schemas, or a map of schemas.
SCHEMA_KEYWORDS = (
    "additionalProperties",
    "items",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
SCHEMA_LIST_KEYWORDS = ("allOf", "anyOf", "oneOf", "prefixItems")
SCHEMA_MAP_KEYWORDS = ("properties", "patternProperties", "dependentSchemas")
# Not applied where they stand; only reached through a $ref.
DEFINITION_KEYWORDS = ("$defs", "definitions")
REFERENCE_KEYWORDS = ("$ref", "$dynamicRef")
ANCHOR_KEYWORDS = ("$anchor", "$dynamicAnchor")


@dataclass(frozen=True)
class Limits:
    """The settings that bound a plugin's declarations and the cost of one validation."""

    plugin_max_indexes: int
    manifest_max_bytes: int
    schema_max_bytes: int
    schema_max_nodes: int
    schema_max_refs: int
    schema_max_depth: int
    validation_max_steps: int
    validation_max_ms: int

    @classmethod
    def from_config(cls, config: Mapping) -> "Limits":
        return cls(
            **{
                f.name: int(config.get(f.name.upper(), DEFAULTS[f.name.upper()]))
                for f in fields(cls)
            }
        )


def current() -> Limits:
    """Return the running app's limits, or the defaults outside an app.

    Read from the configuration once per app (settings are fixed at start): every document
    write asks, and building them each time was a measurable part of a create.
    """
    if not has_app_context():
        return _defaults()
    extensions = current_app.extensions
    limits = extensions.get("extframework.schema_limits")
    if limits is None:
        limits = extensions["extframework.schema_limits"] = Limits.from_config(current_app.config)
    return limits


@lru_cache(maxsize=1)
def _defaults() -> Limits:
    return Limits.from_config(DEFAULTS)


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re2._Regexp:
    """Compile a JSON Schema regular expression with RE2; raise re2.error if RE2 cannot."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options=options)


def pattern_problem(pattern: str) -> str | None:
    """Say why RE2 cannot compile a pattern (backreferences, lookaround, ...), or None."""
    try:
        compile_pattern(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return str(reason)
    return None


def encoded_size(value: object) -> int:
    """Return the size in bytes of a value as compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


# --- quotas -----------------------------------------------------------------------


def manifest_size_problem(manifest: object, limits: Limits) -> str | None:
    """Say why a manifest is too large to consider, or None."""
    size = encoded_size(manifest)
    if size <= limits.manifest_max_bytes:
        return None
    return (
        f"the manifest is {size} bytes as compact JSON; the core accepts at most "
        f"{limits.manifest_max_bytes} (MANIFEST_MAX_BYTES)"
    )


def quota_errors(manifest: dict, limits: Limits) -> list[tuple[list, str]]:
    """Check the quotas that span a plugin's collections: its indexes together."""
    entries = manifest.get("data_schemas")
    if not isinstance(entries, list):
        return []
    total = sum(
        len(e["indexes"])
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("indexes"), list)
    )
    if total <= limits.plugin_max_indexes:
        return []
    return [
        (
            ["data_schemas"],
            f"the collections declare {total} indexes together; one plugin may declare at "
            f"most {limits.plugin_max_indexes} (PLUGIN_MAX_INDEXES), since every index slows "
            "every write to the shared document table",
        )
    ]


# --- one collection schema --------------------------------------------------------


class _Refused(Exception):
    def __init__(self, path: list, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def schema_errors(collection: str, schema: object, limits: Limits) -> list[tuple[list, str]]:
    """Check one collection schema against the cost limits; return (path, message) pairs.

    Paths are relative to the schema. Stops at the first structural problem (a cycle, an
    unresolvable reference, a bound passed); reports every pattern RE2 cannot compile.
    """
    if not isinstance(schema, dict):
        return []
    where = f"collection {collection!r}"
    size = encoded_size(schema)
    if size > limits.schema_max_bytes:
        return [
            (
                [],
                f"{where}: the schema is {size} bytes as compact JSON; the core accepts at most "
                f"{limits.schema_max_bytes} (SCHEMA_MAX_BYTES)",
            )
        ]
    walk = _Walk(schema, where, limits)
    try:
        walk.run()
    except _Refused as refused:
        walk.errors.append((refused.path, refused.message))
    return walk.errors


def _children(node: dict, path: list) -> Iterator[tuple[object, list]]:
    for keyword in SCHEMA_KEYWORDS:
        if keyword in node:
            yield node[keyword], [*path, keyword]
    for keyword in SCHEMA_LIST_KEYWORDS:
        value = node.get(keyword)
        if isinstance(value, list):
            yield from ((sub, [*path, keyword, n]) for n, sub in enumerate(value))
    for keyword in SCHEMA_MAP_KEYWORDS:
        value = node.get(keyword)
        if isinstance(value, dict):
            yield from ((sub, [*path, keyword, name]) for name, sub in value.items())


def _definitions(node: dict, path: list) -> Iterator[tuple[object, list]]:
    for keyword in DEFINITION_KEYWORDS:
        value = node.get(keyword)
        if isinstance(value, dict):
            yield from ((sub, [*path, keyword, name]) for name, sub in value.items())


class _Walk:
    """One pass over a schema graph (subschemas plus $ref edges), memoised per node."""

    def __init__(self, root: dict, where: str, limits: Limits) -> None:
        self.root, self.where, self.limits = root, where, limits
        self.errors: list[tuple[list, str]] = []
        self.memo: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, depth)
        self.active: set[int] = set()
        self.refs = 0
        self.anchors = self._anchors()

    def run(self) -> None:
        # Each definition is checked where it stands too, so an unused one cannot hide a
        # cycle or a bad pattern; only what the root reaches counts toward its size.
        pending = [(self.root, [])]
        while pending:
            node, path = pending.pop()
            self.visit(node, path)
            if isinstance(node, dict):
                pending.extend(_definitions(node, path))
                pending.extend(_children(node, path))

    def _anchors(self) -> dict[str, tuple[dict, list]]:
        found: dict[str, tuple[dict, list]] = {}
        pending: list[tuple[object, list]] = [(self.root, [])]
        while pending:
            node, path = pending.pop()
            if not isinstance(node, dict):
                continue
            for keyword in ANCHOR_KEYWORDS:
                name = node.get(keyword)
                if isinstance(name, str):
                    found.setdefault(name, (node, path))
            pending.extend(_definitions(node, path))
            pending.extend(_children(node, path))
        return found

    def visit(self, node: object, path: list, via: list | None = None) -> tuple[int, int]:
        """Return a node's size and depth with every $ref inlined; ``via`` names the $ref."""
        if not isinstance(node, dict):
            return 1, 1
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        if key in self.active:
            raise _Refused(
                via or path,
                f"{self.where}: this $ref closes a cycle; the core refuses recursive schemas "
                "(a cycle of $refs makes validation never end): spell the nesting out to a "
                "fixed depth",
            )
        if len(self.active) >= self.limits.schema_max_depth:
            raise _Refused(
                [],
                f"{self.where}: with every $ref inlined the schema nests deeper than "
                f"{self.limits.schema_max_depth} levels (SCHEMA_MAX_DEPTH; passed at "
                f"{_pointer(via or path)})",
            )
        self.active.add(key)
        self._check_patterns(node, path)
        size, depth = 1, 0
        edges = [(child, child_path, None) for child, child_path in _children(node, path)]
        for keyword in REFERENCE_KEYWORDS:
            ref = node.get(keyword)
            if isinstance(ref, str):
                self._count_ref([*path, keyword])
                edges.append((*self._resolve(ref, [*path, keyword]), [*path, keyword]))
        for child, child_path, ref_path in edges:
            child_size, child_depth = self.visit(child, child_path, ref_path)
            size += child_size
            depth = max(depth, child_depth)
            if size > self.limits.schema_max_nodes:
                raise _Refused(
                    [],
                    f"{self.where}: with every $ref inlined the schema has more than "
                    f"{self.limits.schema_max_nodes} subschemas (SCHEMA_MAX_NODES; passed at "
                    f"{_pointer(path)}), so one write could cost that many steps: share less "
                    "through $ref inside anyOf/oneOf/allOf",
                )
        self.active.discard(key)
        self.memo[key] = (size, depth + 1)
        return size, depth + 1

    def _count_ref(self, path: list) -> None:
        self.refs += 1
        if self.refs > self.limits.schema_max_refs:
            raise _Refused(
                [],
                f"{self.where}: the schema holds more than {self.limits.schema_max_refs} "
                f"$refs (SCHEMA_MAX_REFS; passed at {_pointer(path)})",
            )

    def _resolve(self, ref: str, path: list) -> tuple[object, list]:
        """Find a local reference's target, as the validator would; refuse any other."""
        if not ref.startswith("#"):
            # manifest._reference_errors already names these; nothing remote is ever fetched.
            raise _Refused(path, f"{self.where}: only local references ('#...') are allowed")
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            anchor = self.anchors.get(fragment)
            if anchor is None:
                raise _Refused(
                    path,
                    f"{self.where}: {ref!r} does not resolve: no $anchor named {fragment!r} "
                    "in this schema",
                )
            return anchor
        node: object = self.root
        target_path: list = []
        for part in fragment.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node, part = node[int(part)], int(part)
            else:
                raise _Refused(
                    path, f"{self.where}: {ref!r} does not resolve to anything in this schema"
                )
            target_path.append(part)
        if not isinstance(node, dict | bool):
            raise _Refused(
                path, f"{self.where}: {ref!r} points at a {type(node).__name__}, not a schema"
            )
        return node, target_path

    def _check_patterns(self, node: dict, path: list) -> None:
        candidates = []
        if isinstance(node.get("pattern"), str):
            candidates.append((node["pattern"], [*path, "pattern"]))
        if isinstance(node.get("patternProperties"), dict):
            candidates += [(p, [*path, "patternProperties", p]) for p in node["patternProperties"]]
        for pattern, where in candidates:
            problem = pattern_problem(pattern)
            if problem:
                self.errors.append(
                    (
                        where,
                        f"{self.where}: the pattern at {_pointer(where)} cannot be compiled by "
                        f"RE2, the linear-time engine the core matches with ({problem}); "
                        "backreferences and lookaround are not supported",
                    )
                )


def _pointer(path: list) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) or "/"
