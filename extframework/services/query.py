"""Turn storage query parameters into one scoped, index-friendly SQL query (SPEC §5).

Filters are typed by the collection's JSON Schema, so ``?count=3`` compares with the
number 3. Pages are keyset pages: the cursor carries the last row's sort values and
``pk``, signed with the app's secret so a client can neither forge nor edit it.
"""

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from extframework import dialect
from extframework.errors import BadRequest
from extframework.services import indexes

OPERATORS = ("gt", "gte", "lt", "lte", "ne", "in", "exists")
RESERVED = ("sort", "limit", "cursor")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_IN_VALUES = 100
MAX_BRANCHES = 1000
SCALAR_TYPES = ("string", "integer", "number", "boolean", "null")
INTEGER = re.compile(r"^-?\d+$")
COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
CURSOR_CONTEXT = b"extframework.storage.cursor.v1|"


@dataclass(frozen=True)
class Filter:
    field: str
    op: str  # eq or one of OPERATORS
    value: object


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool


@dataclass(frozen=True)
class Query:
    filters: tuple[Filter, ...]
    sort: tuple[SortKey, ...]
    limit: int
    cursor: str | None


@dataclass(frozen=True)
class Scope:
    """Where a query runs: one tenant's part of one plugin's collection, and its indexes."""

    tenant: str
    plugin_id: str
    collection: str
    indexes: tuple[tuple[str, ...], ...]


# --- parsing ------------------------------------------------------------------


def _invalid(detail: str, **extra: object) -> BadRequest:
    """A query parameter that cannot be used: 400 ``invalid-query``, naming it in ``extra``."""
    return BadRequest(detail, kind="invalid-query", **extra)


def parse(args: Iterable[tuple[str, str]], schema: dict) -> Query:
    """Read query parameters into a Query, or raise a 400 naming the parameter at fault."""
    seen: set[str] = set()
    filters: list[Filter] = []
    sort: tuple[SortKey, ...] = ()
    limit = DEFAULT_LIMIT
    cursor = None
    for key, raw in args:
        if key in seen:
            raise _invalid(f"The query parameter {key!r} is given more than once.", parameter=key)
        seen.add(key)
        if key == "sort":
            sort = parse_sort(raw, schema)
        elif key == "limit":
            limit = parse_limit(raw)
        elif key == "cursor":
            cursor = raw
        else:
            filters.append(parse_filter(key, raw, schema))
    return Query(tuple(filters), sort, limit, cursor)


def parse_limit(raw: str) -> int:
    if not INTEGER.match(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise _invalid(
            f"limit must be an integer from 1 to {MAX_LIMIT} (got {raw!r}).", parameter="limit"
        )
    return int(raw)


def parse_sort(raw: str, schema: dict) -> tuple[SortKey, ...]:
    keys = []
    for part in raw.split(","):
        part = part.strip()
        descending = part.startswith("-")
        field = part.lstrip("-+")
        if not field:
            raise _invalid(f"sort has an empty field in {raw!r}.", parameter="sort")
        types = field_types(schema, field)
        _require_scalar(field, types)
        if any(k.field == field for k in keys):
            raise _invalid(f"sort names {field!r} twice.", parameter="sort")
        keys.append(SortKey(field, descending))
    return tuple(keys)


def parse_filter(key: str, raw: str, schema: dict) -> Filter:
    field, op = key, "eq"
    head, sep, tail = key.rpartition("__")
    if sep and tail in OPERATORS:
        field, op = head, tail
    elif sep and not _knows(schema, key):
        raise _invalid(
            f"Unknown operator {tail!r} in {key!r}; use one of: "
            + ", ".join(f"__{o}" for o in OPERATORS)
            + ".",
            parameter=key,
            operator=tail,
        )
    types = field_types(schema, field)
    if "\x00" in raw:  # no engine matches it: SQLite ends JSON text there, PostgreSQL refuses it
        raise _invalid(f"{key}: a filter value cannot hold U+0000 (NUL).", parameter=key)
    if op == "exists":
        if raw not in ("true", "false"):
            raise _invalid(f"{key} takes true or false (got {raw!r}).", parameter=key)
        return Filter(field, op, raw == "true")
    _require_scalar(field, types)
    if op == "in":
        values = _split_in(key, raw)
        return Filter(field, op, tuple(coerce(v, types, key) for v in values))
    value = coerce(raw, types, key)
    if value is None and op in COMPARISONS:
        raise _invalid(f"{key} cannot compare with null.", parameter=key)
    return Filter(field, op, value)


def _split_in(key: str, raw: str) -> list[str]:
    """Split an ``__in`` list: comma-separated, or a JSON array when values hold commas."""
    if raw.startswith("["):
        try:
            values = json.loads(raw)
        except json.JSONDecodeError:
            values = None
        if not isinstance(values, list) or not all(
            isinstance(v, str | int | float | bool) or v is None for v in values
        ):
            raise _invalid(f"{key} must be a JSON array of scalars or a,b,c.", parameter=key)
        values = [
            "null" if v is None else json.dumps(v) if not isinstance(v, str) else v for v in values
        ]
    else:
        values = raw.split(",")
    if not 1 <= len(values) <= MAX_IN_VALUES:
        raise _invalid(f"{key} takes 1 to {MAX_IN_VALUES} values.", parameter=key)
    return values


def _require_scalar(field: str, types: frozenset[str] | None) -> None:
    if types is not None and not types & set(SCALAR_TYPES):
        raise _invalid(
            f"The field {field!r} is an {'/'.join(sorted(types))}; "
            "filter or sort on its members with a dotted path.",
            field=field,
        )


# --- the schema as a type map -------------------------------------------------


def _knows(schema: dict, field: str) -> bool:
    try:
        field_types(schema, field)
    except BadRequest:
        return False
    return True


def field_types(schema: dict, field: str) -> frozenset[str] | None:
    """Return the JSON types the schema allows at a dotted path (None: any); 400 if unknown."""
    segments = field.split(".")
    if not all(indexes.FIELD_SEGMENT.match(s) for s in segments):
        raise _invalid(
            f"Unknown field {field!r}: queries take dotted paths of plain names "
            "([A-Za-z_][A-Za-z0-9_]*).",
            field=field,
        )
    nodes = _branches(schema, schema)
    for segment in segments:
        children = []
        for node in nodes:
            properties = node.get("properties")
            if isinstance(properties, dict) and segment in properties:
                children.extend(_branches(properties[segment], schema))
        if not children:
            raise _invalid(
                f"Unknown field {field!r}: the collection's schema does not declare it.",
                field=field,
            )
        nodes = children
    types: set[str] = set()
    for node in nodes:
        node_types = _types_of(node)
        if node_types is None:
            return None
        types |= node_types
    return frozenset(types)


def _branches(node: object, root: dict) -> list[dict]:
    """Expand a subschema into the object schemas it may be: follow local $ref and *Of.

    Each subschema is expanded once however many references reach it, and at most
    MAX_BRANCHES of them: a schema of nested alternatives is typed in linear time or refused.
    """
    found: list[dict] = []
    seen: set[int] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if current is True:
            current = {}
        if not isinstance(current, dict) or id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        if len(found) > MAX_BRANCHES:
            raise _invalid(
                f"The collection's schema has more than {MAX_BRANCHES} alternatives "
                "(anyOf/oneOf/allOf/$ref) at this field; the core does not type a query "
                "through that many. Filter on a field with fewer alternatives.",
            )
        ref = current.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            pending.append(_resolve_pointer(root, ref[1:]))
        for keyword in ("allOf", "anyOf", "oneOf"):
            subs = current.get(keyword)
            if isinstance(subs, list):
                pending.extend(reversed(subs))
    return found


def _resolve_pointer(root: dict, pointer: str) -> object:
    node: object = root
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _types_of(node: dict) -> set[str] | None:
    kind = node.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    literals = node.get("enum") if isinstance(node.get("enum"), list) else None
    if "const" in node:
        literals = [node["const"]]
    if literals is not None:
        return {_json_type(v) for v in literals}
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def coerce(raw: str, types: frozenset[str] | None, parameter: str) -> object:
    """Type a query string value by the schema: null, boolean, integer, number, then string."""
    if types is None:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return raw
        if isinstance(value, float) and not math.isfinite(value):
            return raw
        return value if value is None or isinstance(value, bool | int | float) else raw
    if "null" in types and raw == "null":
        return None
    if "boolean" in types and raw in ("true", "false"):
        return raw == "true"
    if types & {"integer", "number"} and INTEGER.match(raw):
        return int(raw)
    if "number" in types:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value
    if "string" in types:
        return raw
    raise _invalid(
        f"{parameter}={raw!r}: the schema says {' or '.join(sorted(types))}.", parameter=parameter
    )


# --- SQL ----------------------------------------------------------------------


def choose_index(scope: Scope, query: Query) -> str | None:
    """Name the declared index that serves the query best, so SQLite must use it."""
    usable = {f.field for f in query.filters if f.op in ("eq", "in", *COMPARISONS)}
    equal = {f.field for f in query.filters if f.op == "eq" and f.value is not None}
    best, best_score = None, 0
    for fields in scope.indexes:
        score = 0
        for field in fields:
            if field in equal:
                score += 2
                continue
            if field in usable:
                score += 1
            break
        if score == 0 and query.sort and query.sort[0].field == fields[0]:
            score = 1
        if score > best_score:
            best, best_score = fields, score
    if best is None:
        return None
    return indexes.index_name(scope.plugin_id, scope.collection, list(best))


def build(scope: Scope, query: Query, after: dict | None) -> tuple[str, list]:
    """Return the SQL and parameters for one page (one row more than the limit)."""
    engine = dialect.current()
    where = ["tenant = ?", indexes.scope_clause(scope.plugin_id, scope.collection)]
    params: list = [scope.tenant]
    for f in query.filters:
        sql, values = _condition(f)
        where.append(sql)
        params += values
    sort_parts = [
        (expr, placeholder, k.descending)
        for k in query.sort
        for expr, placeholder in engine.sort_key(indexes.checked_path(k.field))
    ]
    if after is not None:
        sql, values = _keyset(sort_parts, after["k"], after["p"])
        where.append(sql)
        params += values
    order = [engine.order(expr, desc) for expr, _, desc in sort_parts] + ["pk ASC"]
    extra = "".join(f", {expr}" for expr, _, _ in sort_parts)
    indexed_by = engine.indexed_by(choose_index(scope, query))
    sql = (
        f"SELECT pk, doc_id, version, created_at, updated_at, data{extra} "
        f"FROM document{indexed_by} WHERE {' AND '.join(where)} "
        f"ORDER BY {', '.join(order)} LIMIT ?"
    )
    return sql, [*params, query.limit + 1]


def _condition(f: Filter) -> tuple[str, list]:
    engine = dialect.current()
    path = indexes.checked_path(f.field)
    if f.op == "exists":
        return engine.field_condition(path, "exists", f.value)
    if f.op == "eq":
        return engine.field_condition(path, "=", f.value)
    if f.op == "ne":
        return engine.field_condition(path, "!=", f.value)
    if f.op == "in":
        values = tuple(v for v in f.value if v is not None)
        terms, params = [], []
        if values:
            sql, params = engine.field_condition(path, "in", values)
            terms.append(sql)
        if len(values) != len(f.value):
            terms.append(engine.field_condition(path, "=", None)[0])
        return f"({' OR '.join(terms)})", params
    return engine.field_condition(path, COMPARISONS[f.op], f.value)


def _keyset(sort_parts: list[tuple[str, str, bool]], values: list, pk: int) -> tuple[str, list]:
    """Rows strictly after the cursor in ORDER BY order; NULL sorts first ascending."""
    same = dialect.current().same
    keys = [*sort_parts, ("pk", "?", False)]
    values = [*values, pk]
    alternatives, params = [], []
    for i, (expr, placeholder, desc) in enumerate(keys):
        terms, term_params = [], []
        for prior_expr, prior_placeholder, _ in keys[:i]:
            terms.append(same(prior_expr, prior_placeholder))
        term_params += values[:i]
        value = values[i]
        if value is None:
            terms.append("1 = 0" if desc else f"{expr} IS NOT NULL")
        elif desc:
            terms.append(f"({expr} < {placeholder} OR {expr} IS NULL)")
            term_params.append(value)
        else:
            terms.append(f"{expr} > {placeholder}")
            term_params.append(value)
        alternatives.append("(" + " AND ".join(terms) + ")")
        params += term_params
    sql = "(" + " OR ".join(alternatives) + ")"
    first_expr, first_placeholder, first_desc = keys[0]
    if not first_desc and values[0] is not None:
        # lets the engine seek instead of scanning from the start
        sql = f"{first_expr} >= {first_placeholder} AND {sql}"
        params.insert(0, values[0])
    return sql, params


# --- cursors ------------------------------------------------------------------


def fingerprint(scope: Scope, query: Query) -> str:
    """Identify the filters and sort a cursor belongs to (the limit may change between pages)."""
    shape = [
        scope.tenant,
        scope.plugin_id,
        scope.collection,
        [[f.field, f.op, f.value] for f in query.filters],
        [[k.field, k.descending] for k in query.sort],
    ]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:24]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret_key: bytes, body: str) -> str:
    return _b64(hmac.new(secret_key, CURSOR_CONTEXT + body.encode(), hashlib.sha256).digest())


def encode_cursor(secret_key: bytes, query_id: str, sort_values: list, pk: int) -> str:
    body = _b64(json.dumps({"q": query_id, "k": sort_values, "p": pk}).encode())
    return f"{body}.{_signature(secret_key, body)}"


def decode_cursor(
    secret_key: bytes, token: str, query_id: str, fallback_keys: tuple[bytes, ...] = ()
) -> dict:
    """Return the cursor's position, or raise 400 if it is forged, edited or for another query.

    A cursor signed with one of ``fallback_keys`` (earlier secrets, during a rotation) passes.
    """
    invalid = _invalid(
        "The cursor is not valid: pass next_cursor exactly as a previous page returned it.",
        parameter="cursor",
    )
    body, _, signature = token.partition(".")
    # compare_digest takes only ASCII strings; a cursor is URL-safe base64 and one dot.
    if not token.isascii() or not signature:
        raise invalid
    if not any(
        hmac.compare_digest(signature, _signature(key, body))
        for key in (secret_key, *fallback_keys)
    ):
        raise invalid
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, binascii.Error):  # signed by us, so only a changed format gets here
        raise invalid from None
    if not isinstance(payload, dict) or payload.get("q") != query_id:
        raise _invalid(
            "The cursor belongs to a different query: repeat the same filters, sort and "
            "X-Tenant-ID as the page that returned it.",
            parameter="cursor",
        )
    return payload
