"""Fixtures for the storage tests: plugins registered through the registry service."""

import pytest

from extframework.db import database
from extframework.models import Plugin
from extframework.services import lifecycle, plugin_admin, registry
from tests.support.processes import serve_app
from tests.support.registry_fixtures import STATE_PATHS, passing_probe, sample_manifest

NOTES_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "count": {"type": "integer", "minimum": 0},
        "price": {"type": "number"},
        "done": {"type": "boolean"},
        "customer_id": {"type": "string"},
        "status": {"enum": ["open", "closed"]},
        "note": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {
            "type": "object",
            "properties": {"owner": {"type": "string"}, "score": {"type": "number"}},
        },
    },
    "required": ["title"],
    "additionalProperties": False,
}
NOTES_INDEXES = [{"fields": ["customer_id"]}, {"fields": ["meta.owner", "count"]}]


def notes_collection(name: str = "notes") -> dict:
    return {"collection": name, "schema": NOTES_SCHEMA, "indexes": NOTES_INDEXES}


def provision_plugin(
    plugin_id: str,
    data_schemas: list[dict] | None = None,
    *,
    state: str = "active",
    tenants: list[str] | None = None,
) -> tuple[Plugin, str]:
    """Register a plugin through ``registry.register`` and walk it to ``state``; return its token.

    ``tenants`` restricts it to those tenants (None: every tenant). Runs against whatever
    database is bound, including a real core's instance file.
    """
    data_schemas = [notes_collection()] if data_schemas is None else data_schemas
    manifest = sample_manifest(plugin_id=plugin_id, data_schemas=data_schemas)
    with database.connection_context():
        plugin, token = registry.register(manifest, actor="test", probe=passing_probe)
        for target in STATE_PATHS[state]:
            lifecycle.transition(plugin, target, cause="test setup", actor="test")
        if tenants is not None:
            plugin_admin.set_tenants(plugin, tenants, actor="test")
    return plugin, token


def set_state(plugin_id: str, state: str) -> None:
    """Force a plugin's state, bypassing the lifecycle rules, to test the storage gate alone."""
    with database.connection_context():
        Plugin.update(state=state).where(Plugin.plugin_id == plugin_id).execute()


@pytest.fixture
def make_storage_plugin(app):
    """Provision a plugin in the test app's database; return (plugin_id, token)."""

    def make(plugin_id="acme-notes", data_schemas=None, *, state="active", tenants=None):
        with app.app_context():
            plugin, token = provision_plugin(plugin_id, data_schemas, state=state, tenants=tenants)
        return plugin.plugin_id, token

    return make


@pytest.fixture
def plugin_api(client):
    """Call the storage API with a plugin token, as a plugin would."""

    class Api:
        def __init__(self, token, tenant=None):
            self.token, self.tenant = token, tenant

        def headers(self, extra=None):
            headers = {"Authorization": f"Bearer {self.token}"}
            if self.tenant is not None:
                headers["X-Tenant-ID"] = self.tenant
            headers.update(extra or {})
            return headers

        def create(self, collection, data, headers=None):
            return client.post(
                f"/api/storage/{collection}", json=data, headers=self.headers(headers)
            )

        def read(self, collection, doc_id, headers=None):
            return client.get(f"/api/storage/{collection}/{doc_id}", headers=self.headers(headers))

        def query(self, collection, params=None, headers=None):
            return client.get(
                f"/api/storage/{collection}",
                query_string=params or {},
                headers=self.headers(headers),
            )

        def patch(self, collection, doc_id, data, headers=None):
            return client.patch(
                f"/api/storage/{collection}/{doc_id}", json=data, headers=self.headers(headers)
            )

        def delete(self, collection, doc_id, headers=None):
            return client.delete(
                f"/api/storage/{collection}/{doc_id}", headers=self.headers(headers)
            )

    return Api


@pytest.fixture
def live_server(app):
    """Serve the test app from a real threaded HTTP server on a loopback port."""
    with serve_app(app) as url:
        yield url


def provision_in_instance(instance, plugin_id: str, data_schemas: list[dict] | None = None) -> str:
    """Provision a plugin in a real core's instance database; return its token."""
    from extframework import create_app

    app = create_app(
        {"DATABASE": str(instance / "extframework.sqlite3"), "HEALTH_MONITOR": False},
        instance_path=str(instance),
    )
    with app.app_context():
        _, token = provision_plugin(plugin_id, data_schemas)
    return token
