"""The proxy service: declared-route matching, request JWTs, forwarding and fault mapping."""

import jwt
import pytest

from extframework.errors import Forbidden, NotFound, Unauthorized, Unavailable
from extframework.services import proxy, tokens
from tests.support.processes import free_port

ISSUER = "http://core.test"
CALLER = proxy.Caller(
    user_id=7, name="Ada", email="ada@example.com", tenant="default", role="member"
)


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def call(app, target, *, method="GET", query="", form=(), timeout_s=2.0, caller=CALLER):
    return proxy.forward(
        target,
        caller,
        method=method,
        query_string=query,
        form=list(form),
        store=app.extensions["extframework.keys"],
        issuer=ISSUER,
        jwt_ttl_s=60,
        timeout_s=timeout_s,
    )


@pytest.mark.parametrize(
    ("pattern", "path", "params"),
    [
        ("/notes", "/notes", {}),
        ("/notes", "/notes/", {}),
        ("/", "/", {}),
        ("/notes/:id", "/notes/42", {"id": "42"}),
        ("/a/:x/b/:y", "/a/1/b/two", {"x": "1", "y": "two"}),
        ("/notes/:id", "/notes", None),
        ("/notes/:id", "/notes/1/2", None),
        ("/notes/:id", "/notes/..", None),
        ("/notes", "/Notes", None),
        ("/notes", "/notes/../admin", None),
    ],
)
def test_match_path(pattern, path, params):
    assert proxy.match_path(pattern, path) == params


def test_parameters_are_quoted_into_the_called_path():
    assert proxy.concrete_path("/notes/:id", {"id": "a b?c#d"}) == "/notes/a%20b%3Fc%23d"


def test_undeclared_paths_and_methods_are_not_found(ctx, shell_plugin):
    shell_plugin()
    for method, path in [("GET", "/admin"), ("DELETE", "/notes"), ("PATCH", "/notes/1")]:
        with pytest.raises(NotFound):
            proxy.resolve("notes", method, path, role="admin", tenant="default")


def test_a_literal_route_wins_over_a_parameter(ctx, shell_plugin):
    shell_plugin(
        routes=[
            {"menu_id": "one", "method": "GET", "path": "/notes/:id"},
            {"menu_id": "new", "method": "GET", "path": "/notes/new"},
        ]
    )
    target = proxy.resolve("notes", "GET", "/notes/new", role="viewer", tenant="default")
    assert target.route.menu_id == "new"


def test_role_below_the_route_role_is_forbidden(ctx, shell_plugin):
    shell_plugin()
    with pytest.raises(Forbidden) as exc:
        proxy.resolve("notes", "POST", "/notes", role="viewer", tenant="default")
    assert "member" in exc.value.detail
    assert proxy.resolve("notes", "POST", "/notes", role="member", tenant="default")


@pytest.mark.parametrize("state", ["registered", "degraded", "disabled", "migrating"])
def test_only_active_plugins_are_served(ctx, shell_plugin, state):
    shell_plugin(state=state)
    with pytest.raises(Unavailable):
        proxy.resolve("notes", "GET", "/notes", role="admin", tenant="default")


def test_a_plugin_not_installed_in_the_tenant_does_not_exist_there(ctx, shell_plugin):
    from extframework.services import accounts

    accounts.create_tenant("acme")
    shell_plugin(installed_in=["acme"])
    assert proxy.resolve("notes", "GET", "/notes", role="viewer", tenant="acme")
    with pytest.raises(NotFound):
        proxy.resolve("notes", "GET", "/notes", role="viewer", tenant="default")
    with pytest.raises(NotFound):
        proxy.resolve("ghost", "GET", "/notes", role="viewer", tenant="default")


def test_each_call_carries_a_fresh_request_jwt_with_the_spec_claims(ctx, shell_plugin, stub_plugin):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("GET", "/notes", body="<p>list</p>")
    target = proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
    assert call(ctx, target) == proxy.Fragment("<p>list</p>", 200)
    call(ctx, target)
    first, second = (c.headers["Authorization"].removeprefix("Bearer ") for c in stub_plugin.calls)
    store = ctx.extensions["extframework.keys"]
    claims = tokens.verify(store, first, issuer=ISSUER, audience="notes")
    assert set(claims) == {
        "iss",
        "aud",
        "sub",
        "name",
        "email",
        "tenant",
        "role",
        "scopes",
        "iat",
        "exp",
        "jti",
    }
    assert claims["sub"] == "7" and claims["tenant"] == "default" and claims["role"] == "member"
    assert claims["scopes"] == tokens.SCOPES_BY_ROLE["member"]
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(first)["kid"] == store.signing_key().kid
    assert tokens.verify(store, second, issuer=ISSUER, audience="notes")["jti"] != claims["jti"]
    with pytest.raises(Unauthorized):
        tokens.verify(store, first, issuer=ISSUER, audience="another-plugin")


def test_query_strings_and_form_bodies_are_forwarded(ctx, shell_plugin, stub_plugin):
    shell_plugin(base_url=stub_plugin.url + "/plugin")
    stub_plugin.reply("GET", "/plugin/notes", body="<p>q</p>")
    stub_plugin.reply("PUT", "/plugin/notes/a%20b", body="<p>saved</p>")
    target = proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
    call(ctx, target, query="q=hello+world&tag=a&tag=b")
    assert stub_plugin.calls[-1].query == [("q", "hello world"), ("tag", "a"), ("tag", "b")]
    target = proxy.resolve("notes", "PUT", "/notes/a b", role="member", tenant="default")
    out = call(ctx, target, method="PUT", form=[("title", "Hi & bye"), ("tag", "x"), ("tag", "y")])
    assert out == proxy.Fragment("<p>saved</p>", 200)
    assert stub_plugin.calls[-1].method == "PUT"
    assert stub_plugin.calls[-1].form == [("title", "Hi & bye"), ("tag", "x"), ("tag", "y")]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/notes", "/plugin-proxy/notes/notes"),
        ("/plugin/notes/3", "/plugin-proxy/notes/notes/3"),
        ("notes?saved=1", "/plugin-proxy/notes/notes?saved=1"),
        ("{base}/notes", "/plugin-proxy/notes/notes"),
    ],
)
def test_redirects_come_back_into_the_shell(ctx, shell_plugin, stub_plugin, location, expected):
    shell_plugin(base_url=stub_plugin.url + "/plugin")
    location = location.format(base=stub_plugin.url + "/plugin")
    stub_plugin.reply("POST", "/plugin/notes", status=303, headers={"Location": location})
    target = proxy.resolve("notes", "POST", "/notes", role="member", tenant="default")
    assert call(ctx, target, method="POST") == proxy.Redirect(expected)


def test_a_redirect_out_of_the_plugin_is_a_fault(ctx, shell_plugin, stub_plugin):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("POST", "/notes", status=302, headers={"Location": "https://evil.example/"})
    target = proxy.resolve("notes", "POST", "/notes", role="member", tenant="default")
    assert call(ctx, target, method="POST").kind == "bad-redirect"


@pytest.mark.parametrize(
    ("reply", "kind", "status"),
    [
        ({"status": 500, "body": "<p>boom</p>"}, "error", 502),
        ({"status": 503, "body": "busy"}, "error", 502),
        ({"status": 200, "body": "{}", "content_type": "application/json"}, "not-html", 502),
        ({"status": 200, "body": "hi", "content_type": "text/plain"}, "not-html", 502),
        ({"status": 200, "body": "<p>slow</p>", "delay_s": 1.5}, "timeout", 504),
    ],
)
def test_plugin_failures_become_faults(ctx, shell_plugin, stub_plugin, caplog, reply, kind, status):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("GET", "/notes", **reply)
    target = proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
    fault = call(ctx, target, timeout_s=0.5)
    assert isinstance(fault, proxy.Fault)
    assert (fault.kind, fault.status) == (kind, status)
    assert "Notes" in fault.title
    assert any("notes GET /notes failed" in r.getMessage() for r in caplog.records)


def test_a_refused_connection_is_a_fault(ctx, shell_plugin):
    shell_plugin(base_url=f"http://127.0.0.1:{free_port()}")
    target = proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
    fault = call(ctx, target)
    assert (fault.kind, fault.status) == ("refused", 502)


def test_plugin_client_errors_with_html_are_shown(ctx, shell_plugin, stub_plugin):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("POST", "/notes", status=422, body="<p>title is required</p>")
    target = proxy.resolve("notes", "POST", "/notes", role="member", tenant="default")
    assert call(ctx, target, method="POST") == proxy.Fragment("<p>title is required</p>", 422)


def test_connections_are_pooled(ctx, shell_plugin, stub_plugin):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("GET", "/notes")
    target = proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
    for _ in range(3):
        call(ctx, target)
    assert proxy.http_pool() is proxy.http_pool()
    assert len({c.client_port for c in stub_plugin.calls}) == 1


def test_a_cookie_a_plugin_sets_never_travels_with_a_later_call(ctx, shell_plugin, stub_plugin):
    """One pooled session serves every user: it must not become a shared cookie jar."""
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("GET", "/notes", headers={"Set-Cookie": "sid=ada-secret; Path=/"})
    target = proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
    call(ctx, target)
    other = proxy.Caller(
        user_id=8, name="Bob", email="bob@example.com", tenant="default", role="member"
    )
    call(ctx, target, caller=other)
    assert [c.headers.get("Cookie") for c in stub_plugin.calls] == [None, None]
