"""The contract checker's commands (issue 16): ``flask plugins check`` in this process, and the
SDK's ``extframework-check`` against a running core; one line per check, exit 1 on a failure."""

import importlib.util
import json

import pytest

from tests import test_contract_check
from tests.support.processes import ROOT, serve_app
from tests.test_contract_check import broken_manifest

broken_plugin = test_contract_check.broken_plugin  # the fixture, shared
SDK_CHECK = ROOT / "sdk" / "extframework_sdk" / "check.py"


def sdk_check():
    """The SDK's module from this tree (the shared venv may hold an older SDK install)."""
    spec = importlib.util.spec_from_file_location("extframework_sdk_check", SDK_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def generous_timeouts(app):
    """A loaded machine must not fail a good plugin's calls."""
    app.config.update(PROXY_TIMEOUT_S=8.0, HEALTH_TIMEOUT_S=8.0)


def write(tmp_path, manifest: dict):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return str(path)


def test_a_passing_plugin_prints_one_pass_line_per_check_and_exits_0(
    runner,
    tmp_path,
    broken_plugin,
):
    path = write(tmp_path, broken_manifest(broken_plugin("good").url))
    result = runner.invoke(args=["plugins", "check", path])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3 + 2 * 8  # manifest, core, health; 8 checks for each of two views
    assert all(line.startswith("PASS ") for line in lines), result.output
    assert "PASS auth-expired GET /items: " in result.output


def test_a_failing_check_is_a_fail_line_and_exit_1(runner, tmp_path, broken_plugin):
    path = write(tmp_path, broken_manifest(broken_plugin("expired").url))
    result = runner.invoke(args=["plugins", "check", path])
    assert result.exit_code == 1
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    assert [line.split(":")[0] for line in fails] == [
        "FAIL auth-expired GET /items",
        "FAIL auth-expired GET /items/",  # the route's own colon: GET /items/:id
    ]
    assert "instead of 401" in fails[0]


def test_json_prints_the_checks(runner, tmp_path, broken_plugin):
    path = write(tmp_path, broken_manifest(broken_plugin("script").url))
    result = runner.invoke(args=["plugins", "check", path, "--json"])
    assert result.exit_code == 0
    checks = json.loads(result.output)
    assert {c["level"] for c in checks} == {"pass", "warn"}
    assert all(set(c) == {"check", "ok", "level", "route", "detail"} for c in checks)


def test_an_invalid_manifest_fails_with_its_errors(runner, tmp_path):
    path = write(tmp_path, {"plugin_id": "x"})
    result = runner.invoke(args=["plugins", "check", path])
    assert result.exit_code == 1
    assert result.output.startswith("FAIL manifest: The manifest is not valid")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    assert runner.invoke(args=["plugins", "check", str(bad_json)]).exit_code == 1


def test_another_core_needs_a_token(runner, tmp_path):
    path = write(tmp_path, {"plugin_id": "x"})
    result = runner.invoke(args=["plugins", "check", path, "--core", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "needs --token" in result.output


def test_the_sdk_command_checks_against_a_running_core(
    app,
    live_core,
    make_plugin,
    tmp_path,
    broken_plugin,
    capsys,
):
    manifest = broken_manifest(broken_plugin("audience").url)
    _, token = make_plugin(manifest)
    path = write(tmp_path, manifest)
    token_file = tmp_path / "plugin.token"
    token_file.write_text(token + "\n")
    check = sdk_check()
    assert check.main([path, "--core", live_core, "--token-file", str(token_file)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("PASS core: unchanged")
    assert [line.split(":")[0] for line in lines if line.startswith("FAIL")] == [
        "FAIL auth-audience GET /items",
        "FAIL auth-audience GET /items/",
    ]
    assert len(lines) == 19

    assert check.main([path, "--core", live_core, "--token", token, "--json"]) == 1
    assert len(json.loads(capsys.readouterr().out)) == 19
    assert check.main([path, "--core", live_core, "--token", "efpt_wrong"]) == 2
    assert "answered 401" in capsys.readouterr().err


def test_the_sdk_command_prints_the_dry_runs_changes_under_core(
    app,
    live_core,
    make_plugin,
    tmp_path,
    broken_plugin,
    capsys,
):
    manifest = broken_manifest(broken_plugin("good").url)
    _, token = make_plugin(manifest)
    newer = {**manifest, "version": "1.1.0"}
    newer["data_schemas"] = [*manifest["data_schemas"], {"collection": "notes", "schema": {}}]
    path = write(tmp_path, newer)
    assert sdk_check().main([path, "--core", live_core, "--token", token]) == 0
    out = capsys.readouterr().out
    assert "PASS core: compatible" in out
    assert "    compatible change in notes $: collection_added" in out


def test_flask_plugins_check_asks_another_core_over_http(
    app, live_core, make_plugin, tmp_path, broken_plugin, runner, make_user, user_token
):
    manifest = broken_manifest(broken_plugin("no-token").url)
    make_plugin(manifest)
    make_user("op@example.com", role="admin", operator=True)
    token = user_token("op@example.com")
    path = write(tmp_path, manifest)
    with serve_app(app) as other_core:  # another URL: the command goes over HTTP
        result = runner.invoke(
            args=["plugins", "check", path, "--core", other_core, "--token", token]
        )
        refused = runner.invoke(
            args=["plugins", "check", path, "--core", other_core, "--token", "efpt_wrong"]
        )
    assert result.exit_code == 1, result.output
    assert [line.split(":")[0] for line in result.output.splitlines() if "FAIL" in line] == [
        "FAIL auth-no-token GET /items",
        "FAIL auth-no-token GET /items/",
    ]
    assert refused.exit_code == 1 and "answered 401" in refused.output


def test_flask_plugins_check_prints_the_dry_runs_changes_under_core(
    runner, tmp_path, broken_plugin, make_plugin
):
    """As the SDK's command does, and as the guide says of both (issue 16: 'shows the diff')."""
    manifest = broken_manifest(broken_plugin("good").url)
    make_plugin(manifest)
    newer = {**manifest, "version": "2.0.0", "migration": {"path": "/migrate"}}
    newer["data_schemas"] = [*manifest["data_schemas"], {"collection": "notes", "schema": {}}]
    newer["data_schemas"][0] = {**newer["data_schemas"][0], "schema": {"type": "string"}}
    result = runner.invoke(args=["plugins", "check", write(tmp_path, newer)])
    assert "WARN core: breaking" in result.output, result.output
    assert "    compatible change in notes $: collection_added" in result.output
    assert "    breaking change in " in result.output
    assert "    migration handler: POST " + newer["base_url"] + "/migrate\nPASS health" in (
        result.output
    )
