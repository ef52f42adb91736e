"""The live core the Schemathesis run fuzzes: gunicorn, an operator, real plugins and their tokens.

``start_fuzz_core(tmp_path)`` starts the core with its health monitor on, creates an operator,
registers plugins over HTTP with an enrolment key (each a real process from
``plugins/health_server.py``) and waits until the health monitor has made them ``active``.
``fuzz_document(openapi, manifest, examples)`` turns the core's generic storage operations into the
ones a plugin with that manifest really has, so generated bodies follow its collection schemas.
"""

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from extframework import create_app, db
from extframework.services import accounts, enrolment, sessions, tokens
from tests.support.processes import VENV_BIN, Process, core_env, free_port
from tests.support.registry_fixtures import start_plugin_process

OPERATOR_EMAIL = "ops@example.com"
OPERATOR_PASSWORD = "a long enough fuzzing password"
MEMBER_EMAIL = "member@example.com"
MEMBER_PASSWORD = "another long enough password"

# Strings with formats, patterns and maxLength; integers with bounds; enums; nested objects;
# arrays (of strings and of objects); required fields; no unknown properties.
CONTACTS_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 80},
        "email": {"type": "string", "format": "email", "maxLength": 120},
        "website": {"type": "string", "format": "uri"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "status": {"enum": ["lead", "customer", "churned"]},
        "address": {
            "type": "object",
            "properties": {
                "street": {"type": "string", "maxLength": 100},
                "city": {"type": "string", "minLength": 1, "maxLength": 60},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 8},
    },
    "required": ["name", "email", "status"],
    "additionalProperties": False,
}
ORDERS_SCHEMA = {
    "type": "object",
    "properties": {
        "customer_ref": {"type": "string", "format": "uuid"},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
        "priority": {"type": "integer", "enum": [1, 2, 3]},
        "placed_at": {"type": "string", "format": "date-time"},
        "lines": {
            "type": "array",
            "minItems": 1,
            "maxItems": 5,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[a-z0-9-]{3,12}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                },
                "required": ["sku", "qty"],
                "additionalProperties": False,
            },
        },
        "note": {"type": ["string", "null"], "maxLength": 200},
    },
    "required": ["customer_ref", "quantity", "lines"],
    "additionalProperties": False,
}


def fuzz_manifest(plugin_id: str, base_url: str) -> dict:
    return {
        "plugin_id": plugin_id,
        "name": "Fuzz CRM",
        "version": "1.0.0",
        "base_url": base_url,
        "menu_items": [
            {"id": "contacts", "label": "Contacts", "view": {"method": "GET", "path": "/contacts"}}
        ],
        "data_schemas": [
            {
                "collection": "contacts",
                "schema": copy.deepcopy(CONTACTS_SCHEMA),
                "indexes": [{"fields": ["email"]}, {"fields": ["status", "age"]}],
            },
            {
                "collection": "orders",
                "schema": copy.deepcopy(ORDERS_SCHEMA),
                "indexes": [{"fields": ["customer_ref"]}],
            },
        ],
    }


@dataclass
class FuzzCore:
    core: Process
    instance: Path
    credentials: dict[str, str] = field(default_factory=dict)  # name -> token or key
    manifests: dict[str, dict] = field(default_factory=dict)
    plugin_processes: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.core.url

    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials['operator_jwt']}"}

    def register(self, tmp_path: Path, plugin_id: str) -> str:
        """Register a plugin over HTTP, as a plugin does at start; return its token."""
        process = start_plugin_process(tmp_path)
        self.plugin_processes.append(process)
        manifest = fuzz_manifest(plugin_id, process.url)
        response = requests.post(
            f"{self.url}/api/registry/plugins",
            json=manifest,
            headers={"Authorization": f"Bearer {self.credentials['enrolment_key']}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        self.manifests[plugin_id] = manifest
        return response.json()["plugin_token"]

    def wait_until_active(self, plugin_id: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        state = None
        while time.monotonic() < deadline:
            response = requests.get(
                f"{self.url}/api/registry/plugins/{plugin_id}", headers=self.operator(), timeout=10
            )
            state = response.json().get("state")
            if state == "active":
                return
            time.sleep(0.1)
        raise AssertionError(f"{plugin_id} is still {state} after {timeout_s} s")

    def rotate_token(self, plugin_id: str, *, revoke_now: bool) -> str:
        response = requests.post(
            f"{self.url}/api/registry/plugins/{plugin_id}/rotate-token",
            json={"revoke_now": revoke_now},
            headers=self.operator(),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()["plugin_token"]

    def request_move(self, tmp_path: Path, plugin_id: str, token: str) -> int:
        """Update a plugin to a new version on another server; return the pending update's id.

        A move to another origin awaits an operator's approval (docs/registry.md), so the run
        has a real pending update to approve or reject.
        """
        process = start_plugin_process(tmp_path)
        self.plugin_processes.append(process)
        manifest = {**self.manifests[plugin_id], "version": "1.1.0", "base_url": process.url}
        response = requests.put(
            f"{self.url}/api/registry/plugins/{plugin_id}",
            json=manifest,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        pending = requests.get(
            f"{self.url}/api/registry/plugins/{plugin_id}/pending-update",
            headers=self.operator(),
            timeout=10,
        )
        return pending.json()["pending_update"]["id"]

    def user_jwt(self, email: str, password: str) -> str:
        response = requests.post(
            f"{self.url}/api/auth/token", json={"email": email, "password": password}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def stop(self) -> None:
        for process in self.plugin_processes:
            process.kill()
        self.core.stop()


def _prepare_instance(instance: Path, base_url: str) -> dict[str, str]:
    """Create the database, the people and an enrolment key in-process (the CLI costs ~6 s each).

    Returns the credentials made here: an enrolment key, a revoked one, and a user JWT of a
    person who has logged out since (so it is refused).
    """
    app = create_app({"HEALTH_MONITOR": False, "BASE_URL": base_url}, instance_path=str(instance))
    with app.app_context(), db.database.connection_context():
        db.upgrade()
        accounts.create_user(OPERATOR_EMAIL, OPERATOR_PASSWORD, role="admin", operator=True)
        accounts.create_user(MEMBER_EMAIL, MEMBER_PASSWORD, role="member")
        gone = accounts.create_user(
            "gone@example.com", MEMBER_PASSWORD, role="admin", operator=True
        )
        logged_out_jwt = tokens.mint_user_jwt(
            app.extensions["extframework.keys"],
            issuer=base_url,
            user_id=str(gone.id),
            email=gone.email,
            tenant=accounts.DEFAULT_TENANT,
            role=gone.role,
            ttl_s=3600,
            generation=sessions.current_generation(gone.id),
        )
        sessions.log_out(gone.id)
        _, key = enrolment.create_key(actor="fuzz setup", label="fuzz")
        revoked, revoked_key = enrolment.create_key(actor="fuzz setup", label="revoked")
        enrolment.revoke_key(revoked.id, actor="fuzz setup")
    return {
        "enrolment_key": key,
        "revoked_enrolment_key": revoked_key,
        "logged_out_jwt": logged_out_jwt,
    }


def start_fuzz_core(tmp_path: Path) -> FuzzCore:
    """Start gunicorn (2 gthread workers, health monitor on) with an operator and a member."""
    instance = tmp_path / "instance"
    port = free_port()
    env = core_env(
        instance,
        port,
        HEALTH_MONITOR="true",
        HEALTH_INTERVAL_S=0.5,
        # Generated logins fail by the hundred from one address: answer their 429 at once.
        LOGIN_ADDRESS_DELAY_S=0,
    )
    credentials = _prepare_instance(instance, env["EXTFW_BASE_URL"])
    core = Process(
        [
            str(VENV_BIN / "gunicorn"),
            "-w",
            "2",
            "--threads",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "app:app",
        ],
        port,
        "/healthz",
        env=env,
        log_path=tmp_path / "core.log",
    )
    fuzz = FuzzCore(core=core, instance=instance, credentials=credentials)
    fuzz.credentials["operator_jwt"] = fuzz.user_jwt(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    fuzz.credentials["member_jwt"] = fuzz.user_jwt(MEMBER_EMAIL, MEMBER_PASSWORD)
    return fuzz


# --- the storage operations a plugin with this manifest has ----------------------------------


def _merge_patch_schema(schema: dict) -> dict:
    """A JSON merge patch that, merged onto any valid document, leaves a valid one.

    Optional properties may be ``null`` (removed); required ones may be replaced, not removed.
    A nested object is replaced by a whole valid value, so its own required fields stay.
    """
    required = set(schema.get("required", []))
    properties = {}
    for name, sub in schema["properties"].items():
        properties[name] = sub if name in required else {"anyOf": [sub, {"type": "null"}]}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def fuzz_document(
    openapi: dict, manifest: dict, *, examples: dict[str, object], tenants: list[str]
) -> dict:
    """The core's document as this installation and one plugin see it.

    ``/api/storage/{collection}…`` (``_batch`` too) becomes one path per collection the
    manifest declares, typed by its schema (the core's document cannot know a plugin's
    collections); every path
    parameter named in ``examples`` gets that example, so some generated calls reach a real
    resource instead of a 404; ``PUT …/tenants`` names only ``tenants``, the ones that exist
    (a schema-valid slug naming no tenant is rightly a 400: no document can list them).
    """
    document = copy.deepcopy(openapi)
    paths = document["paths"]
    restricted = paths["/api/registry/plugins/{plugin_id}/tenants"]["put"]["requestBody"]
    restricted["content"]["application/json"]["schema"]["properties"]["tenants"]["items"] = {
        "enum": tenants
    }
    for item in paths.values():
        for operation in item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter["in"] == "path" and parameter["name"] in examples:
                    parameter["example"] = examples[parameter["name"]]
    generic = paths.pop("/api/storage/{collection}")
    generic_item = paths.pop("/api/storage/{collection}/{doc_id}")
    generic_batch = paths.pop("/api/storage/{collection}/_batch")
    for declared in manifest["data_schemas"]:
        name, schema = declared["collection"], declared["schema"]
        collection = _without_path_parameter(generic, "collection")
        collection["post"]["requestBody"]["content"]["application/json"]["schema"] = schema
        collection["get"]["parameters"] = _query_parameters(collection["get"]["parameters"], schema)
        item = _without_path_parameter(generic_item, "collection")
        for content in item["patch"]["requestBody"]["content"].values():
            content["schema"] = _merge_patch_schema(schema)
        for operation in (*collection.values(), *item.values()):
            if isinstance(operation, dict) and "operationId" in operation:
                operation["operationId"] += "_" + name
        for link in collection["post"]["responses"]["201"].get("links", {}).values():
            link["operationId"] += "_" + name  # the operations the link names were renamed
            link["parameters"].pop("collection", None)  # and lost that path parameter
        paths[f"/api/storage/{name}"] = collection
        paths[f"/api/storage/{name}/{{doc_id}}"] = item
        batch = _without_path_parameter(generic_batch, "collection")
        batch["post"]["operationId"] += "_" + name
        batch["post"]["requestBody"]["content"]["application/json"]["schema"] = _batch_schema(
            document, schema
        )
        paths[f"/api/storage/{name}/_batch"] = batch
    return document


def _batch_schema(document: dict, schema: dict) -> dict:
    """The Batch body with each operation's ``data`` typed by this collection's schema."""
    batch = copy.deepcopy(document["components"]["schemas"]["Batch"])
    create, patch, _ = batch["properties"]["operations"]["items"]["oneOf"]
    create["properties"]["data"] = schema
    patch["properties"]["data"] = _merge_patch_schema(schema)
    return batch


def _without_path_parameter(path_item: dict, name: str) -> dict:
    path_item = copy.deepcopy(path_item)
    for operation in path_item.values():
        if isinstance(operation, dict) and "parameters" in operation:
            operation["parameters"] = [
                p for p in operation["parameters"] if not (p["in"] == "path" and p["name"] == name)
            ]
    return path_item


def _query_parameters(parameters: list[dict], schema: dict) -> list[dict]:
    """``sort`` by this collection's scalar fields; equality filters on them, ranges on integers.

    No ``cursor`` (see below).

    The core's document cannot say which fields a collection has: ``sort=tags`` (an array) is
    rightly a 400 there, so here ``sort`` names only fields a plugin could sort by.
    """
    scalars = [
        name
        for name, sub in schema["properties"].items()
        if sub.get("type") in ("string", "integer") or "enum" in sub
    ]
    sorts = [*scalars, *(f"-{name}" for name in scalars), f"{scalars[-1]},-{scalars[0]}"]
    parameters = [
        {**p, "schema": {"enum": sorts}} if p["in"] == "query" and p["name"] == "sort" else p
        for p in parameters
        # A cursor is opaque: only a next_cursor the core signed is one, which no schema can
        # describe (any other string is rightly 400: test_api_edges.py's property tests).
        if not (p["in"] == "query" and p["name"] == "cursor")
    ]
    for name in scalars:
        sub = schema["properties"][name]
        parameters.append({"in": "query", "name": name, "schema": sub})
        if sub.get("type") == "integer":
            for op in ("gt", "lte"):
                parameters.append({"in": "query", "name": f"{name}__{op}", "schema": sub})
    return parameters
