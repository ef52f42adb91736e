"""The registry's operator commands, run as a person would: `flask --app app ...`."""

import json
import sqlite3

import pytest

from tests.support.processes import flask_cli
from tests.support.registry_fixtures import sample_manifest


@pytest.fixture
def instance(tmp_path):
    path = tmp_path / "instance"
    assert flask_cli(path, "init-db").returncode == 0
    return path


def run(instance, *args):
    result = flask_cli(instance, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def query(instance, sql):
    with sqlite3.connect(instance / "extframework.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def test_enrolment_keys_create_list_revoke(instance):
    lines = run(instance, "enrolment-keys", "create", "--uses", "2", "--expires", "1h")
    key = lines[-1]
    assert key.startswith("efek_") and len(key) > 40
    assert "uses: 2" in lines[0]
    [(key_hash, uses, expires)] = query(
        instance, "SELECT key_hash, uses_left, expires_at FROM enrolment_key"
    )
    assert uses == 2 and expires is not None and key not in key_hash
    listed = run(instance, "enrolment-keys", "list")
    assert listed[0].startswith("1\tusable\tuses left: 2") and key not in "\n".join(listed)
    run(instance, "enrolment-keys", "revoke", "1")
    assert run(instance, "enrolment-keys", "list")[0].startswith("1\trevoked")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expires", "soon"], "is not a duration"),
        (["--uses", "0"], "0 is not in the range"),
    ],
)
def test_enrolment_key_refusals(instance, args, message):
    result = flask_cli(instance, "enrolment-keys", "create", *args)
    assert result.returncode != 0 and message in result.stderr
    assert query(instance, "SELECT count(*) FROM enrolment_key") == [(0,)]


def test_plugin_lifecycle_from_the_command_line(instance, tmp_path, healthy_plugin_server):
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(sample_manifest(base_url=healthy_plugin_server.url)))
    lines = run(instance, "plugins", "register", str(manifest_file))
    token = lines[-1]
    assert token.startswith("efpt_")
    assert lines[0] == "Registered test-plugin 1.0.0 (registered)."
    assert run(instance, "plugins", "list")[0].split("\t")[:4] == [
        "test-plugin",
        "1.0.0",
        "registered",
        "not checked",
    ]

    refused = flask_cli(instance, "plugins", "disable", "test-plugin")
    assert refused.returncode != 0
    assert "is registered; an operator cannot disable it" in refused.stderr
    assert "Allowed from registered: active" in refused.stderr

    # The first health check would make it active; do it the way the monitor records it.
    with sqlite3.connect(instance / "extframework.sqlite3") as conn:
        conn.execute("UPDATE plugin SET state = 'active'")
    assert run(instance, "plugins", "disable", "test-plugin", "--reason", "maintenance") == [
        "test-plugin is now disabled."
    ]
    run(instance, "plugins", "enable", "test-plugin")
    rotated = run(instance, "plugins", "rotate-token", "test-plugin")[-1]
    assert rotated.startswith("efpt_") and rotated != token
    run(instance, "plugins", "disable", "test-plugin")
    run(instance, "plugins", "remove", "test-plugin")
    assert run(instance, "plugins", "list")[0].split("\t")[2] == "deregistered"
    shown = json.loads("\n".join(run(instance, "plugins", "show", "test-plugin")))
    assert [(h["from"], h["to"], h["actor"]) for h in shown["state_history"]][-4:] == [
        ("active", "disabled", "cli"),
        ("disabled", "active", "cli"),
        ("active", "disabled", "cli"),
        ("disabled", "deregistered", "cli"),
    ]
    assert shown["state_history"][-4]["cause"] == "disabled by an operator: maintenance"
    assert query(instance, "SELECT count(*) FROM plugin_token WHERE revoked_at IS NULL") == [(0,)]
    again = flask_cli(instance, "plugins", "enable", "test-plugin")
    assert again.returncode != 0 and "No transition leaves deregistered" in again.stderr
    # CLI commands never run health sweeps.
    assert query(instance, "SELECT count(*) FROM lease") == [(0,)]


def test_register_lists_every_manifest_error(instance, tmp_path):
    manifest = sample_manifest(plugin_id="Bad Id", version="one")
    manifest["data_schemas"][0]["schema"]["type"] = "thing"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    result = flask_cli(instance, "plugins", "register", str(path))
    assert result.returncode != 0
    for where in ("/plugin_id", "/version", "/data_schemas/0/schema/type"):
        assert where in result.stderr
    assert query(instance, "SELECT count(*) FROM plugin") == [(0,)]


def test_register_refuses_a_plugin_that_fails_its_probe(instance, tmp_path, plugin_server):
    server = plugin_server("error")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(sample_manifest(base_url=server.url)))
    result = flask_cli(instance, "plugins", "register", str(path))
    assert result.returncode != 0
    assert f"{server.url}/health answered HTTP 500" in result.stderr
    assert query(instance, "SELECT count(*) FROM plugin") == [(0,)]


def test_unknown_plugin_is_a_clear_error(instance):
    result = flask_cli(instance, "plugins", "rotate-token", "ghost")
    assert result.returncode != 0 and "No plugin 'ghost'" in result.stderr
