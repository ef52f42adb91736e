"""The manifest's meta-schema as OpenAPI components, so the document says exactly what it is.

``Manifest`` is ``schemas/manifest.schema.json`` itself: each ``$defs`` entry becomes a
component named ``Manifest_<name>`` and each ``#/$defs/<name>`` reference points there. ``$id``
and ``$schema`` are dropped: inside the OpenAPI document an ``$id`` would move the base URI
every ``$ref`` resolves against (OpenAPI 3.1 schemas are JSON Schema 2020-12 already).
"""

from extframework.services.manifest import meta_schema

PREFIX = "Manifest_"


def _translate(node: object) -> object:
    if isinstance(node, dict):
        result = {key: _translate(value) for key, value in node.items()}
        ref = result.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            result["$ref"] = "#/components/schemas/" + PREFIX + ref.removeprefix("#/$defs/")
        return result
    if isinstance(node, list):
        return [_translate(value) for value in node]
    return node


def manifest_schemas() -> dict:
    """``Manifest`` and its definitions, ready for ``components.schemas``."""
    published = meta_schema()
    definitions = published.get("$defs", {})
    root = {k: v for k, v in published.items() if k not in ("$schema", "$id", "$defs")}
    schemas = {"Manifest": _translate(root)}
    schemas.update({PREFIX + name: _translate(value) for name, value in definitions.items()})
    return schemas
