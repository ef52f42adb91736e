"""The contract checker's probes (issue 16): each planted defect of a broken plugin is found.

The plugin is tests/support/plugins/broken_plugin.py, a real process on loopback with one
defect per mode; the core is the test app, its service called directly.
"""

import json
import sys
import time
from pathlib import Path

import pytest

from extframework.db import database
from extframework.models import Plugin
from extframework.services import contract_check, contract_fragments
from tests.support.processes import Process, free_port
from tests.support.registry_fixtures import sample_manifest

BROKEN_PLUGIN = Path(__file__).resolve().parent / "support" / "plugins" / "broken_plugin.py"
# Generous, so a loaded machine cannot fail a good call; the slow mode answers after 60 s.
PROXY_TIMEOUT_S = 8.0
HEALTH_TIMEOUT_S = 8.0
AUTH_CHECKS = set(contract_check.BAD_TOKENS)


def broken_manifest(url: str, plugin_id: str = "broken") -> dict:
    return sample_manifest(
        plugin_id=plugin_id,
        name="Broken",
        base_url=url + "/plugin",
        menu_items=[
            {"id": "items", "label": "Items", "view": {"method": "GET", "path": "/items"}},
            {"id": "item", "label": "Item", "view": {"method": "GET", "path": "/items/:id"}},
        ],
    )


@pytest.fixture
def broken_plugin(app, tmp_path):
    """Start broken_plugin.py in a mode; it trusts this app's published keys."""
    started: list[Process] = []
    jwks = tmp_path / "jwks.json"
    with app.app_context():
        jwks.write_text(json.dumps(app.extensions["extframework.keys"].jwks()))

    def start(mode: str, plugin_id: str = "broken") -> Process:
        port = free_port()
        args = [sys.executable, str(BROKEN_PLUGIN), "--port", str(port), "--mode", mode]
        args += ["--jwks", str(jwks), "--issuer", app.config["BASE_URL"]]
        args += ["--plugin-id", plugin_id]
        process = Process(args, port, "/", log_path=tmp_path / f"broken-{mode}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def run_checks(app, manifest: dict, **config) -> list[dict]:
    with app.app_context(), database.connection_context():
        plugin = Plugin.get_or_none(Plugin.plugin_id == manifest["plugin_id"])
        return contract_check.check(
            manifest,
            plugin=plugin,
            store=app.extensions["extframework.keys"],
            config={
                **app.config,
                "PROXY_TIMEOUT_S": PROXY_TIMEOUT_S,
                "HEALTH_TIMEOUT_S": HEALTH_TIMEOUT_S,
                **config,
            },
        )


def failed(results: list[dict]) -> set[str]:
    return {r["check"] for r in results if not r["ok"]}


def test_a_correct_plugin_passes_every_check(app, broken_plugin, make_plugin):
    manifest = broken_manifest(broken_plugin("good").url)
    make_plugin(manifest)
    results = run_checks(app, manifest)
    assert failed(results) == set(), results
    assert all(r["level"] == "pass" for r in results), results
    names = [(r["check"], r["route"]) for r in results]
    for route in ("GET /items", "GET /items/:id"):
        for name in (*AUTH_CHECKS, "view-html", "fragment"):
            assert (name, route) in names
    assert {"manifest", "core", "health"} <= {name for name, _ in names}
    core = next(r for r in results if r["check"] == "core")
    assert core["detail"].startswith("unchanged")


def test_an_unregistered_plugin_is_checked_as_a_new_registration(app, broken_plugin):
    manifest = broken_manifest(broken_plugin("good").url)
    results = run_checks(app, manifest)
    assert failed(results) == set(), results
    core = next(r for r in results if r["check"] == "core")
    assert core["detail"].startswith("new")


DEFECTS = [
    ("no-token", "auth-no-token"),
    ("forged-key", "auth-forged-key"),
    ("alg-none", "auth-alg-none"),
    ("hs256", "auth-hs256-public-key"),
    ("expired", "auth-expired"),
    ("audience", "auth-audience"),
    ("text-plain", "view-html"),
    ("slow", "view-html"),
    ("redirect-off", "view-html"),
    ("no-health", "health"),
]


@pytest.mark.parametrize(("mode", "check"), DEFECTS)
def test_the_checker_finds_the_planted_defect(app, broken_plugin, make_plugin, mode, check):
    manifest = broken_manifest(broken_plugin(mode).url)
    make_plugin(manifest)
    results = run_checks(app, manifest)
    assert failed(results) == {check}, results
    failures = [r for r in results if not r["ok"]]
    assert all(r["detail"] for r in failures)
    if check.startswith("auth-"):
        assert {r["route"] for r in failures} == {"GET /items", "GET /items/:id"}
        assert "instead of 401" in failures[0]["detail"]


def test_a_slow_view_fails_within_the_proxy_timeout(app, broken_plugin, make_plugin):
    manifest = broken_manifest(broken_plugin("slow").url)
    make_plugin(manifest)
    started = time.monotonic()
    results = run_checks(app, manifest)
    # Liveness bound: the plugin holds each view for 60 s; the checker gives up at the timeout.
    assert time.monotonic() - started < 40
    view = next(r for r in results if r["check"] == "view-html" and r["route"] == "GET /items")
    assert f"within {PROXY_TIMEOUT_S:g} s" in view["detail"]


def test_a_redirect_off_base_url_names_where_it_went(app, broken_plugin, make_plugin):
    process = broken_plugin("redirect-off")
    manifest = broken_manifest(process.url)
    make_plugin(manifest)
    results = run_checks(app, manifest)
    view = next(r for r in results if r["check"] == "view-html" and r["route"] == "GET /items")
    assert f"{process.url}/elsewhere" in view["detail"] and "outside base_url" in view["detail"]


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("redirect-undeclared", "/nowhere, which no view of the manifest declares"),
        ("redirect-loop", "More than 3 redirects"),
    ],
)
def test_a_redirect_the_shell_cannot_follow_fails_the_view(
    app, broken_plugin, make_plugin, mode, says
):
    manifest = broken_manifest(broken_plugin(mode).url)
    make_plugin(manifest)
    results = run_checks(app, manifest)
    assert failed(results) == {"view-html"}
    view = next(r for r in results if r["check"] == "view-html" and r["route"] == "GET /items")
    assert says in view["detail"]


def test_script_and_event_handlers_are_warnings_naming_what_the_shell_strips(
    app, broken_plugin, make_plugin
):
    manifest = broken_manifest(broken_plugin("script").url)
    make_plugin(manifest)
    results = run_checks(app, manifest)
    assert failed(results) == set(), results
    warnings = [r for r in results if r["level"] == "warn"]
    assert {(r["check"], r["route"]) for r in warnings} == {
        ("fragment", "GET /items"),
        ("fragment", "GET /items/:id"),  # redirected to /items: the same fragment
    }
    detail = warnings[0]["detail"]
    assert "<script> removed with its content" in detail
    assert "event handler onclick on <button> removed" in detail


def test_a_plugin_refusing_the_valid_token_fails_the_view_check(app, broken_plugin, make_plugin):
    """It verifies against another audience: every bad token gets 401, and so does the good one."""
    manifest = broken_manifest(broken_plugin("good", plugin_id="someone-else").url)
    make_plugin(manifest)
    results = run_checks(app, manifest)
    assert failed(results) == {"view-html"}
    view = next(r for r in results if r["check"] == "view-html")
    assert "refused a valid request JWT" in view["detail"] and "'broken'" in view["detail"]


def test_an_invalid_manifest_lists_its_field_errors_and_calls_nothing(app):
    manifest = sample_manifest(plugin_id="Not Valid", version="one")
    results = run_checks(app, manifest)
    assert [r["check"] for r in results] == ["manifest"]
    assert not results[0]["ok"]
    assert "/plugin_id" in results[0]["detail"] and "/version" in results[0]["detail"]


def test_a_refused_update_fails_the_core_check(app, broken_plugin, make_plugin):
    url = broken_plugin("good").url
    make_plugin(broken_manifest(url))
    older = {**broken_manifest(url), "version": "0.9.0"}
    results = run_checks(app, older)
    assert failed(results) == {"core"}
    core = next(r for r in results if r["check"] == "core")
    assert "version-not-higher" in core["detail"]


FRAGMENTS = [
    ('<p style="color:red">Hi</p>', "attribute style on <p> removed"),
    ('<a href="javascript:alert(1)">x</a>', "href on <a> with a javascript: URL removed"),
    ('<form action="http://elsewhere.example/x" method="post"></form>', "form aimed outside"),
    ("<style>p{}</style><p>x</p>", "<style> removed with its content"),
    ("<marquee>x</marquee>", "<marquee> removed (its text stays)"),
    ('<input name="csrf_token" value="mine">', "an input named csrf_token removed"),
]


@pytest.mark.parametrize(("html", "finding"), FRAGMENTS)
def test_the_fragment_review_names_what_the_sanitizer_changes(html, finding):
    level, detail = contract_fragments.review(
        html, plugin_id="broken", base_url="http://127.0.0.1:9/plugin", current_path="/items"
    )
    assert (level, finding in detail) == ("warn", True), detail


def test_a_whole_page_and_plugin_links_need_no_change():
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>About</title></head><body>'
        '<a href="/items">Items</a><a href="https://example.org/">Out</a>'
        '<form method="delete" action="/items/1"><button class="btn">Go</button></form>'
        "</body></html>"
    )
    level, detail = contract_fragments.review(
        page, plugin_id="broken", base_url="http://127.0.0.1:9/plugin", current_path="/about"
    )
    assert level == "pass", detail


def test_a_fragment_the_shell_refuses_fails():
    deep = "<div>" * 200 + "x" + "</div>" * 200 + " " * 3000
    level, detail = contract_fragments.review(
        deep, plugin_id="broken", base_url="http://127.0.0.1:9/plugin", current_path="/items"
    )
    assert level == "fail" and "nested more than" in detail
