"""The OpenAPI 3.1 description of the core's HTTP API, assembled from one module per blueprint.

``auth``, ``registry`` (+ ``registry_schemas``), ``storage`` and ``shell`` each describe their
blueprint's paths and answers; ``common`` holds the shared pieces (problems, headers, security);
``manifest`` embeds the published manifest meta-schema. Problem types are read from
``problems.PROBLEM_KINDS`` when the document is built, never copied.
"""

from functools import cache


@cache
def openapi_document() -> dict:
    """Return the API description; the server URL is left relative so it fits any BASE_URL."""
    # Imported here: the blueprints import this package, and these modules read the blueprints'
    # request-body specs.
    from extframework.openapi import (
        auth,
        common,
        contract_check,
        registry,
        registry_schemas,
        shell,
        storage,
    )
    from extframework.openapi.manifest import manifest_schemas

    parts = (auth, registry, contract_check, storage, shell)
    paths: dict = {}
    schemas = {
        "Problem": common.problem_schema(),
        "FieldError": common.field_error_schema(),
        **manifest_schemas(),
        **registry_schemas.schemas(),
    }
    for part in parts:
        paths.update(part.paths())
        if part is not registry:
            schemas.update(part.schemas())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "extframework core API",
            "version": "1",
            "description": _description(common.problem_types_markdown()),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "auth", "description": "identity: user tokens and the JWKS"},
            {"name": "registry", "description": "package manager: plugins and their lifecycle"},
            {"name": "storage", "description": "filesystem: each plugin's documents"},
            {"name": "shell", "description": "window manager: liveness"},
        ],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "responses": common.error_responses(),
            "headers": common.headers(),
            "securitySchemes": common.security_schemes(),
        },
        "x-problem-types": common.problem_types_table(),
    }


def _description(problem_table: str) -> str:
    return (
        "The core's identity, registry and storage APIs. Every error is RFC 9457 problem "
        "details (`application/problem+json`) whose `type` is one of the URIs below; branch "
        "on `type`, never on `title` or `detail`. Field errors are `{pointer, keyword, "
        "message}` items of `errors`. Every answer carries `Cache-Control` (`no-store` unless "
        "it says otherwise); any call can answer 503 with `Retry-After` when the database is "
        "busy.\n\n" + problem_table
    )
