"""The contract checker over HTTP (issue 16): the dry run agrees with the real update and
changes nothing; who may run which check."""

import pytest

from extframework.db import database
from extframework.models import (
    AuditEvent,
    Collection,
    EnrolmentKey,
    HealthCheck,
    ManifestVersion,
    MigrationRun,
    PendingUpdate,
    Plugin,
    PluginToken,
    Route,
    SigningKeyRow,
    Transition,
)
from extframework.openapi import openapi_document
from extframework.services import migrations
from tests.support.openapi_check import check_response
from tests.support.registry_fixtures import sample_manifest

PLUGIN = "/api/registry/plugins/test-plugin"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def compatible() -> dict:
    manifest = sample_manifest(version="1.1.0")
    manifest["data_schemas"][0]["schema"]["properties"]["note"] = {"type": "string"}
    return manifest


def breaking(handler: bool) -> dict:
    manifest = sample_manifest(version="2.0.0")
    manifest["data_schemas"][0]["schema"]["properties"]["count"]["type"] = "string"
    if handler:
        manifest["migration"] = {"path": "/migrate", "timeout_s": 30}
    return manifest


CASES = [
    ("compatible", compatible(), 200),
    ("breaking", breaking(handler=True), 202),
    ("refused", breaking(handler=False), 409),
    ("refused", sample_manifest(version="0.9.0"), 409),
    ("unchanged", sample_manifest(), 409),
    # base_url on another origin (another port): kept for an operator, nothing probed
    ("needs-approval", sample_manifest(version="1.1.0", base_url="http://127.0.0.1:10/p"), 202),
    # base_url moved on the same origin: probed first, and nothing listens there
    ("refused", sample_manifest(version="1.1.0", base_url="http://127.0.0.1:9/moved"), 502),
]


def snapshot(app) -> dict:
    """Everything an update could change: the rows, the registry version, the audit log."""
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        version = database.execute_sql('SELECT "epoch", "version" FROM registry_version').fetchall()
        return {
            "plugin": (plugin.version, plugin.state, plugin.base_url, plugin.manifest),
            "versions": ManifestVersion.select().count(),
            "routes": [(r.method, r.path, r.role) for r in Route.select().order_by(Route.id)],
            "collections": [(c.name, c.schema, c.indexes) for c in Collection.select()],
            "audit": AuditEvent.select().count(),
            "transitions": Transition.select().count(),
            "registry_version": version,
        }


@pytest.mark.parametrize(("outcome", "manifest", "status"), CASES)
def test_the_dry_run_says_what_the_update_then_does_and_changes_nothing(
    app, client, make_plugin, outcome, manifest, status
):
    _, token = make_plugin()
    before = snapshot(app)
    dry = client.post(PLUGIN + "/manifest-check", json=manifest, headers=bearer(token))
    assert dry.status_code == 200, dry.get_json()
    check_response(
        openapi_document(),
        PLUGIN.replace("test-plugin", "{plugin_id}") + "/manifest-check",
        "post",
        dry,
    )
    verdict = dry.get_json()
    assert snapshot(app) == before

    real = client.put(PLUGIN, json=manifest, headers=bearer(token))
    assert (verdict["outcome"], verdict["status"]) == (outcome, real.status_code)
    if real.status_code >= 400:
        assert verdict["problem"] == real.get_json()
        assert verdict["diff"] == real.get_json().get("diff", [])
    elif outcome == "needs-approval":
        assert verdict["diff"] == real.get_json()["pending_update"]["changes"]
    elif outcome == "compatible":
        assert verdict["diff"] == real.get_json()["changes"]
    if outcome == "breaking":
        body = real.get_json()
        assert verdict["migration"]["breaking"] == body["changes"]
        assert verdict["migration"]["handler"] == body["migration"]["handler"]
        assert migrations.wait_for_attempts(30)  # nothing answers at the handler's URL


def test_an_operator_may_dry_run_a_plugin_that_is_not_registered(client, make_user, user_token):
    make_user("op@example.com", role="admin", operator=True)
    token = user_token("op@example.com")
    manifest = sample_manifest(plugin_id="newcomer")
    answer = client.post(
        "/api/registry/plugins/newcomer/manifest-check", json=manifest, headers=bearer(token)
    )
    assert answer.status_code == 200
    verdict = answer.get_json()
    assert (verdict["outcome"], verdict["status"], verdict["installed_version"]) == (
        "refused",
        502,  # nothing listens at the sample's base_url: registration would fail its probe
        None,
    )
    assert "health check failed" in verdict["problem"]["detail"]


def test_an_invalid_manifest_is_refused_in_the_verdict_with_its_field_errors(client, make_plugin):
    _, token = make_plugin()
    manifest = sample_manifest(version="not a version")
    verdict = client.post(PLUGIN + "/manifest-check", json=manifest, headers=bearer(token))
    body = verdict.get_json()
    assert (body["outcome"], body["status"]) == ("refused", 400)
    assert body["problem"]["errors"][0]["pointer"] == "/version"


@pytest.mark.parametrize("check", ["manifest-check", "contract-check"])
def test_only_the_plugin_itself_or_an_operator_may_check(
    client, make_plugin, make_user, user_token, check
):
    make_plugin()
    _, other = make_plugin()
    make_user("member@example.com", role="admin")
    url = f"{PLUGIN}/{check}"
    manifest = sample_manifest()
    assert client.post(url, json=manifest).status_code == 401
    assert client.post(url, json=manifest, headers=bearer(other)).status_code == 403
    member = user_token("member@example.com")
    refused = client.post(url, json=manifest, headers=bearer(member))
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"


def test_a_plugin_token_cannot_aim_the_probes_at_another_url(client, make_plugin):
    _, token = make_plugin()
    manifest = sample_manifest(base_url="http://127.0.0.1:10/elsewhere")
    refused = client.post(PLUGIN + "/contract-check", json=manifest, headers=bearer(token))
    assert refused.status_code == 403
    assert "base_url must be the registered one" in refused.get_json()["detail"]


def test_the_contract_check_answers_each_check_over_http(client, make_plugin):
    _, token = make_plugin()  # nothing listens at the sample's base_url
    answer = client.post(PLUGIN + "/contract-check", json=sample_manifest(), headers=bearer(token))
    assert answer.status_code == 200
    check_response(
        openapi_document(), "/api/registry/plugins/{plugin_id}/contract-check", "post", answer
    )
    body = answer.get_json()
    assert body["ok"] is False
    failing = {c["check"] for c in body["checks"] if not c["ok"]}
    assert {"health", "view-html", "auth-no-token"} <= failing
    assert all("could not connect" in c["detail"] for c in body["checks"] if c["check"] == "health")


def test_a_plugin_tokens_invalid_manifest_is_judged_not_refused(client, make_plugin):
    """The endpoint judges an invalid manifest in its 200; a missing base_url calls nothing."""
    _, token = make_plugin()
    manifest = sample_manifest()
    del manifest["base_url"]
    answer = client.post(PLUGIN + "/contract-check", json=manifest, headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    checks = answer.get_json()["checks"]
    assert [(c["check"], c["ok"]) for c in checks] == [("manifest", False)]
    assert "base_url" in checks[0]["detail"]


@pytest.mark.parametrize(
    "manifest",
    [sample_manifest(), compatible(), breaking(handler=True), breaking(handler=False)],
    ids=["installed", "compatible", "breaking", "refused"],
)
def test_the_probes_change_nothing_either(app, client, make_plugin, manifest):
    """contract-check runs the dry run and calls the plugin: no row, version or key changes."""
    _, token = make_plugin()

    def everything() -> dict:
        rows = snapshot(app)
        with app.app_context(), database.connection_context():
            return {
                **rows,
                "health": HealthCheck.select().count(),
                "tokens": [(t.id, t.revoked_at) for t in PluginToken.select()],
                "keys": [k.kid for k in SigningKeyRow.select()],
                "pending": PendingUpdate.select().count(),
                "runs": MigrationRun.select().count(),
                "enrolment": EnrolmentKey.select().count(),
            }

    # the core's first signing key is made on first use (by any request JWT or the JWKS)
    assert client.get("/.well-known/jwks.json").status_code == 200
    before = everything()
    answer = client.post(PLUGIN + "/contract-check", json=manifest, headers=bearer(token))
    assert answer.status_code == 200
    assert everything() == before
