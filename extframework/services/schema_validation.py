"""The validator collection schemas run with: RE2 for patterns, and a budget per document.

Draft 2020-12 as jsonschema implements it, with two changes (issue 11):

- ``pattern``, ``patternProperties`` and the keywords that consult them
  (``additionalProperties``, ``unevaluatedProperties``) match with RE2, which runs in linear
  time, so no pattern can backtrack catastrophically; ``uniqueItems`` hashes instead of
  comparing every pair.
- ``format`` is asserted, not just annotated (SPEC §5), with every format jsonschema checks
  given the ``format-nongpl`` extra; ``regex`` compiles with RE2, as patterns do.
- Every keyword evaluation is one step of a budget (``VALIDATION_MAX_STEPS``, with the clock
  checked every few steps against ``VALIDATION_MAX_MS``). A document that needs more is
  refused, whatever the schema, so no schema registered before these limits existed can hold
  a worker either.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema._utils import extras_msg
from jsonschema.exceptions import ValidationError
from referencing.jsonschema import DRAFT202012

from extframework.services.schema_limits import Limits, compile_pattern, pattern_problem

CLOCK_EVERY = 8  # steps between clock checks: a step costs microseconds, the clock ~50 ns


class BudgetExceeded(Exception):
    """A validation needed more steps or time than its budget allows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Budget:
    __slots__ = ("steps", "max_steps", "deadline", "limits")

    def __init__(self, limits: Limits) -> None:
        self.steps = 0
        self.limits = limits
        self.max_steps = limits.validation_max_steps
        self.deadline = time.monotonic() + limits.validation_max_ms / 1000

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise BudgetExceeded(f"more than {self.max_steps} steps (VALIDATION_MAX_STEPS)")
        if self.steps % CLOCK_EVERY == 0 and time.monotonic() > self.deadline:
            raise BudgetExceeded(
                f"more than {self.limits.validation_max_ms} ms (VALIDATION_MAX_MS)"
            )


_budget: ContextVar[_Budget | None] = ContextVar("validation_budget", default=None)


@contextmanager
def budget(limits: Limits) -> Iterator[None]:
    """Run the validations inside under one budget; raise BudgetExceeded when it runs out."""
    token = _budget.set(_Budget(limits))
    try:
        yield
    except RecursionError:
        # Only a schema registered before $ref cycles were refused gets here.
        raise BudgetExceeded("a nesting deeper than the core follows") from None
    finally:
        _budget.reset(token)


def _tick() -> None:
    current = _budget.get()
    if current is not None:
        current.tick()


def _search(pattern: str, text: str) -> bool:
    try:
        compiled = compile_pattern(pattern)
    except Exception:
        # A schema stored before patterns were checked: refuse rather than backtrack.
        raise BudgetExceeded(
            f"the pattern {pattern!r} cannot be matched in linear time ({pattern_problem(pattern)})"
        ) from None
    return compiled.search(text) is not None


# --- keywords ---------------------------------------------------------------------


def pattern(validator, patrn, instance, schema):
    if validator.is_type(instance, "string") and not _search(patrn, instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def pattern_properties(validator, patternProperties, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patternProperties.items():
        for k, v in instance.items():
            if _search(patrn, k):
                yield from validator.descend(v, subschema, path=k, schema_path=patrn)


def additional_names(instance: dict, schema: dict) -> list[str]:
    """Name the properties neither ``properties`` nor ``patternProperties`` covers."""
    declared = schema.get("properties") or {}
    patterns = list(schema.get("patternProperties") or {})
    return [
        name
        for name in instance
        if name not in declared and not any(_search(p, name) for p in patterns)
    ]


def additional_properties(validator, aP, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    extras = set(additional_names(instance, schema))
    if validator.is_type(aP, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], aP, path=extra)
    elif not aP and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            error = "Additional properties are not allowed (%s %s unexpected)"
            yield ValidationError(error % extras_msg(sorted(extras, key=str)))


def _is_valid(errors) -> bool:
    return next(errors, None) is None


def _evaluated_keys(validator, instance: dict, schema) -> list:
    """jsonschema's ``find_evaluated_property_keys_by_schema``, matching patterns with RE2."""
    _tick()
    if validator.is_type(schema, "boolean"):
        return []
    keys: list = []
    for keyword in ("$ref", "$dynamicRef"):
        ref = schema.get(keyword)
        if ref is not None:
            resolved = validator._resolver.lookup(ref)
            keys += _evaluated_keys(
                validator.evolve(schema=resolved.contents, _resolver=resolved.resolver),
                instance,
                resolved.contents,
            )
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys += properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if (subschema := schema.get(keyword)) is None:
            continue
        keys += (k for k, v in instance.items() if _is_valid(validator.descend(v, subschema)))
    if "patternProperties" in schema:
        for name in instance:
            if any(_search(p, name) for p in schema["patternProperties"]):
                keys.append(name)
    for name, subschema in (schema.get("dependentSchemas") or {}).items():
        if name in instance:
            keys += _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if _is_valid(validator.descend(instance, subschema)):
                keys += _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys += _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys += _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys += _evaluated_keys(validator, instance, schema["else"])
    return keys


def unevaluated_properties(validator, unevaluatedProperties, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    evaluated = set(_evaluated_keys(validator, instance, schema))
    unevaluated = []
    for name in instance:
        if name not in evaluated:
            for _ in validator.descend(
                instance[name], unevaluatedProperties, path=name, schema_path=name
            ):
                unevaluated.append(name)
                break
    if unevaluated:
        if unevaluatedProperties is False:
            error = "Unevaluated properties are not allowed (%s %s unexpected)"
            yield ValidationError(error % extras_msg(sorted(unevaluated, key=str)))
        else:
            error = (
                "Unevaluated properties are not valid under the given schema "
                "(%s %s unevaluated and invalid)"
            )
            yield ValidationError(error % extras_msg(unevaluated))


def _canonical(value: object) -> object:
    """A hashable form equal exactly when JSON Schema calls two values equal (1 == 1.0)."""
    if value is True or value is False:
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("l", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("o", frozenset((k, _canonical(v)) for k, v in value.items()))
    return ("z", value)


def unique_items(validator, uI, instance, schema):
    distinct = len({_canonical(item) for item in instance}) if isinstance(instance, list) else 0
    if uI and validator.is_type(instance, "array") and distinct != len(instance):
        yield ValidationError(f"{instance!r} has non-unique elements")


OVERRIDES = {
    "pattern": pattern,
    "patternProperties": pattern_properties,
    "additionalProperties": additional_properties,
    "unevaluatedProperties": unevaluated_properties,
    "uniqueItems": unique_items,
}


def _counted(keyword: Callable) -> Callable:
    def step(validator, value, instance, schema):
        _tick()
        return keyword(validator, value, instance, schema)

    return step


# Draft 2020-12's own checkers (a bare FormatChecker() mixes in older drafts' "time").
FORMAT_CHECKER = FormatChecker(formats=())
FORMAT_CHECKER.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)


@FORMAT_CHECKER.checks("regex")
def _is_re2_regex(instance: object) -> bool:
    return not isinstance(instance, str) or pattern_problem(instance) is None


BudgetedValidator = validators.extend(
    Draft202012Validator,
    validators={
        name: _counted(OVERRIDES.get(name, keyword))
        for name, keyword in Draft202012Validator.VALIDATORS.items()
    },
)


# --- descending into subschemas ---------------------------------------------------------

# A validator's validator for one of its subschemas, made once instead of at every descent:
# jsonschema's ``descend`` builds it anew each time (a resource, a resolver, a validator
# object), a third of a small document's validation (234k -> 164k instructions).
# Validators are immutable and a subschema without a resolver of its own gets one derived
# only from its parent's, so the one made first is the one jsonschema would make again.
# Keyed by identity, holding both objects so that an id is not reused while its entry
# lives; bounded.
MAX_CHILD_VALIDATORS = 4096
_children: dict[tuple[int, int], tuple[object, object, object]] = {}
_jsonschema_descend = BudgetedValidator.descend


def _child(parent, schema):
    key = (id(parent), id(schema))
    held = _children.get(key)
    if held is not None and held[0] is parent and held[1] is schema:
        return held[2]
    resolver = parent._resolver.in_subresource(DRAFT202012.create_resource(schema))
    child = parent.evolve(schema=schema, _resolver=resolver)
    if len(_children) >= MAX_CHILD_VALIDATORS:
        _children.clear()
    _children[key] = (parent, schema, child)
    return child


def _descend(self, instance, schema, path=None, schema_path=None, resolver=None):
    """jsonschema's ``descend`` (4.26), with the subschema's validator made once (``_child``)."""
    if resolver is not None or self._ref_resolver is not None or not isinstance(schema, dict):
        yield from _jsonschema_descend(self, instance, schema, path, schema_path, resolver)
        return
    evolved = _child(self, schema)
    for k, v in self._APPLICABLE_VALIDATORS(schema):
        validator = evolved.VALIDATORS.get(k)
        if validator is None:
            continue
        errors = validator(evolved, v, instance, schema) or ()
        for error in errors:
            error._set(
                validator=k,
                validator_value=v,
                instance=instance,
                schema=schema,
                type_checker=evolved.TYPE_CHECKER,
            )
            if k not in {"if", "$ref"}:
                error.schema_path.appendleft(k)
            if path is not None:
                error.path.appendleft(path)
            if schema_path is not None:
                error.schema_path.appendleft(schema_path)
            yield error


BudgetedValidator.descend = _descend
_jsonschema_evolve = BudgetedValidator.evolve


def _evolve(self, **changes):
    """jsonschema's ``evolve``, but a subschema is validated by this same class.

    jsonschema picks the class from the subschema's own ``$schema`` (``validator_for``): one
    naming draft-07 would get a plain validator, which matches patterns with Python's
    backtracking ``re`` and counts no step. Registration refuses such a subschema
    (manifest.py); this covers one stored before it did.
    """
    schema = changes.get("schema", self.schema)
    if isinstance(schema, dict) and "$schema" in schema:
        changes["schema"] = {k: v for k, v in schema.items() if k != "$schema"}
    return _jsonschema_evolve(self, **changes)


BudgetedValidator.evolve = _evolve
