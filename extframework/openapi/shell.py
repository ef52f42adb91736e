"""The window manager's one API path (blueprints/shell.py): the readiness check.

``GET /metrics`` (observability.py) is Prometheus's text format for the operator's scraper,
not part of the API plugins and people use; docs/operations.md describes it.
"""

from extframework.openapi.common import answer, common_errors, obj, ref


def paths() -> dict:
    return {
        "/healthz": {
            "get": {
                "tags": ["shell"],
                "summary": "Whether the core and its database answer",
                "description": "503 also when the database's schema is older than this release "
                "(`upgrade-needed`: run init-db) or newer (`schema-too-new`), or the health "
                "monitor stopped (`health-monitor-stopped`).",
                "operationId": "healthz",
                "security": [],
                "responses": {
                    "200": answer("The database answered.", ref("Health")),
                    **common_errors(auth=False),
                },
            }
        }
    }


def schemas() -> dict:
    return {"Health": obj({"status": {"const": "ok"}})}
