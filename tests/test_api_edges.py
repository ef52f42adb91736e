"""The HTTP API's edges (issue 12): bodies, 401 and 405 answers, cursors, no-op patches, policies.

Each test here reproduces a finding of the issue; it failed before the change it goes with.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extframework import create_app, db
from extframework.db import database
from extframework.errors import BadRequest
from extframework.models import Installation, Plugin
from extframework.services import query

PROBLEM = "application/problem+json"
PLUGIN = "/api/registry/plugins/test-plugin"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


def stored(app) -> Plugin:
    with app.app_context(), database.connection_context():
        return Plugin.get(Plugin.plugin_id == "test-plugin")


def assert_problem(response, status: int = 400) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    return response.get_json()


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        ("{not json", "application/json", "not valid JSON"),
        ("{not json", None, "Content-Type"),
        ("[]", "application/json", "JSON object"),
        ('"disable"', "application/json", "JSON object"),
        ('{"reason": 5}', "application/json", "/reason must be a string"),
        ('{"confirm": ["x"]}', "application/json", "/confirm must be a string or null"),
        ('{"reson": "typo"}', "application/json", "/reson is not a field"),
    ],
)
def test_a_malformed_or_wrong_shaped_body_does_not_disable_the_plugin(
    app, client, operator, make_plugin, body, content_type, says
):
    make_plugin()
    headers = {"Content-Type": content_type} if content_type else {}
    problem = assert_problem(client.post(f"{PLUGIN}/disable", data=body, headers=headers))
    assert says in problem["detail"]
    assert stored(app).state == "active"


def test_field_errors_name_each_field_with_a_pointer_and_a_keyword(client, operator, make_plugin):
    make_plugin()
    problem = assert_problem(client.post(f"{PLUGIN}/disable", json={"reason": 1, "x": 2}))
    assert sorted(problem["errors"], key=lambda e: e["pointer"]) == [
        {"pointer": "/reason", "keyword": "type", "message": "must be a string"},
        {
            "pointer": "/x",
            "keyword": "additionalProperties",
            "message": "is not a field of this request",
        },
    ]


@pytest.mark.parametrize("body", [None, {}, {"reason": "maintenance"}])
def test_a_lifecycle_verb_takes_no_body_or_an_object_of_its_optional_fields(
    app, client, operator, make_plugin, body
):
    make_plugin()
    response = client.post(f"{PLUGIN}/disable", json=body) if body is not None else None
    response = response or client.post(f"{PLUGIN}/disable")
    assert response.status_code == 200, response.get_json()
    assert stored(app).state == "disabled"


@pytest.mark.parametrize(
    "body", [{}, {"tenants": "default"}, {"tenants": [1]}, {"tenant": ["default"]}, []]
)
def test_a_wrong_tenants_body_does_not_open_a_restricted_plugin_to_every_tenant(
    app, client, operator, make_plugin, body
):
    make_plugin()
    assert client.put(f"{PLUGIN}/tenants", json={"tenants": []}).status_code == 200
    problem = assert_problem(client.put(f"{PLUGIN}/tenants", json=body))
    if isinstance(body, dict):
        assert "'tenants' (null (every tenant) or a list of tenant slugs)" in problem["detail"]
    assert stored(app).restricted is True


@pytest.mark.parametrize("body", [{}, {"policy": "shred"}, {"policy": None}, {"policy": ["purge"]}])
def test_a_wrong_uninstall_policy_body_changes_nothing(app, client, operator, make_plugin, body):
    make_plugin()
    url = f"{PLUGIN}/tenants/default/uninstall-policy"
    problem = assert_problem(client.put(url, json=body))
    assert problem["errors"][0]["pointer"] == "/policy"
    with app.app_context(), database.connection_context():
        assert Installation.select().where(Installation.uninstall_policy != "retain").count() == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/registry/pending-updates/1/reject", {"reason": ["no"]}),
        ("post", "/api/registry/pending-updates/1/approve", "{not json"),
        ("post", f"{PLUGIN}/migration/retry", {"now": True}),
        ("put", PLUGIN, "{not json"),
        ("post", "/api/registry/plugins", "[1, 2]"),
    ],
)
def test_every_registry_body_is_checked_before_anything_happens(
    client, operator, make_plugin, method, path, body
):
    _, token = make_plugin()
    kwargs = {"json": body} if not isinstance(body, str) else {"data": body}
    headers = bearer(token) if path == PLUGIN else {}
    if path == "/api/registry/plugins":
        headers = bearer("efek_whatever")  # the key is checked first; a bad one is 401
    response = getattr(client, method)(path, headers=headers, **kwargs)
    if path == "/api/registry/plugins":
        assert_problem(response, 401)
    else:
        assert_problem(response)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com"},
        {"email": 1, "password": "x"},
        {"email": "a", "password": "b", "otp": 1},
    ],
)
def test_the_token_endpoint_lists_what_is_wrong_with_its_body(client, body):
    problem = assert_problem(client.post("/api/auth/token", json=body))
    assert problem["errors"] and all(
        set(e) == {"pointer", "keyword", "message"} for e in problem["errors"]
    )


# --- 401 and 405 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "invalid_request"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "invalid_request"),
        ({"Authorization": "Bearer"}, "invalid_request"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
    ],
)
def test_a_401_carries_a_bearer_challenge_with_an_rfc_6750_error(client, headers, error):
    response = client.get("/api/auth/me", headers=headers)
    assert_problem(response, 401)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="extframework", ')
    assert f'error="{error}"' in challenge
    assert 'error_description="' in challenge


def test_a_token_of_the_wrong_kind_is_an_invalid_token(
    client, make_plugin, make_user, user_token, plugin_api
):
    _, plugin_token = make_plugin()
    make_user("someone@example.com")
    jwt = user_token("someone@example.com")
    on_user_endpoint = client.get("/api/auth/me", headers=bearer(plugin_token))
    on_storage = plugin_api(jwt).query("items")
    for response in (on_user_endpoint, on_storage):
        assert_problem(response, 401)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.fixture
def csrf_client(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": str(tmp_path / "csrf.sqlite3"),
            "BASE_URL": "http://core.test",
            "HEALTH_MONITOR": False,
        },
        instance_path=str(tmp_path / "csrf-instance"),
    )
    with app.app_context():
        db.upgrade()
    return app.test_client()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/.well-known/jwks.json", {"GET", "HEAD", "OPTIONS"}),
        ("delete", "/.well-known/jwks.json", {"GET", "HEAD", "OPTIONS"}),
        ("put", "/login", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("patch", "/api/auth/token", {"POST", "OPTIONS"}),
    ],
)
def test_an_undeclared_method_is_405_with_allow_before_any_csrf_check(
    csrf_client, method, path, allowed
):
    response = getattr(csrf_client, method)(path)
    assert response.status_code == 405, response.get_data(as_text=True)
    assert set(response.headers["Allow"].split(", ")) == allowed
    assert "CSRF" not in response.get_data(as_text=True)
    if not path.startswith("/login"):
        assert response.mimetype == PROBLEM


def test_a_declared_page_write_still_needs_its_csrf_token(csrf_client):
    response = csrf_client.post("/login", data={"email": "a@example.com", "password": "x"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


# --- cursors --------------------------------------------------------------------------------


@pytest.mark.parametrize("cursor", ["é", "abc.dé", "ü.ü", "\u2028", "a.b", "."])
def test_a_cursor_that_is_not_ours_is_400_not_500(app, make_plugin, plugin_api, cursor):
    _, token = make_plugin()
    response = plugin_api(token).query("items", {"cursor": cursor})
    problem = assert_problem(response)
    assert problem["parameter"] == "cursor"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_string_as_a_cursor_is_refused_with_400(text):
    try:
        query.decode_cursor(b"secret", text, "query-id")
    except BadRequest:
        pass


@pytest.fixture
def items_token(make_plugin) -> str:
    """One plugin for every example of a property test: its queries change nothing."""
    return make_plugin()[1]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_any_cursor_over_http_is_a_page_or_a_400_never_a_500(items_token, plugin_api, text):
    response = plugin_api(items_token).query("items", {"cursor": text})
    assert response.status_code in (200, 400), (text, response.get_json())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.text(), st.none(), st.floats(allow_nan=False))))
def test_a_cursor_we_signed_decodes_and_any_edit_of_it_is_400(values):
    token = query.encode_cursor(b"secret", "query-id", values, 7)
    assert query.decode_cursor(b"secret", token, "query-id")["p"] == 7
    for edited in (token[:-1], "é" + token, token + "x", token.replace(".", "é")):
        with pytest.raises(BadRequest):
            query.decode_cursor(b"secret", edited, "query-id")


# --- no-op patches --------------------------------------------------------------------------


def test_a_patch_that_changes_nothing_keeps_the_version_updated_at_and_etag(
    make_plugin, plugin_api
):
    _, token = make_plugin()
    api = plugin_api(token)
    created = api.create("items", {"title": "same", "count": 1, "flag": 1})
    doc = created.get_json()
    for patch in ({}, {"title": "same"}, {"count": 1, "missing": None}):
        response = api.patch("items", doc["id"], patch)
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == doc
        assert response.headers["ETag"] == created.headers["ETag"]
    changed = api.patch("items", doc["id"], {"flag": True}).get_json()  # true is not 1 in JSON
    assert changed["version"] == doc["version"] + 1 and changed["data"]["flag"] is True


# --- uninstall policies after deregistration ------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "status", "says"),
    [("retain", 200, None), ("archive", 409, "archived to test-plugin/"), ("purge", 409, "purged")],
)
def test_a_policy_whose_data_was_decided_cannot_change_but_retained_data_s_can(
    app, client, operator, make_plugin, plugin_api, policy, status, says
):
    _, token = make_plugin()
    assert plugin_api(token).create("items", {"title": "kept?"}).status_code == 201
    url = f"{PLUGIN}/tenants/default/uninstall-policy"
    assert client.put(url, json={"policy": policy}).status_code == 200
    assert client.post(f"{PLUGIN}/disable").status_code == 200
    gone = client.post(f"{PLUGIN}/deregister", json={"confirm": "test-plugin"})
    assert gone.status_code == 200, gone.get_json()

    later = "purge" if policy != "purge" else "retain"
    response = client.put(url, json={"policy": later})
    plugin_pk = stored(app).id
    with app.app_context(), database.connection_context():
        now = Installation.get(Installation.plugin == plugin_pk).uninstall_policy
    if status == 200:
        assert response.status_code == 200 and now == later
    else:
        problem = assert_problem(response, 409)
        assert says in problem["detail"] and "deregistered" in problem["detail"]
        assert now == policy
