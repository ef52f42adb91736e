"""The window manager's one API path (blueprints/shell.py): the liveness check."""

from extframework.openapi.common import answer, common_errors, obj, ref


def paths() -> dict:
    return {
        "/healthz": {
            "get": {
                "tags": ["shell"],
                "summary": "Whether the core and its database answer",
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
