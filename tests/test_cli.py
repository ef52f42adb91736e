"""Operator commands, run as a person would: `flask --app app ...` in a subprocess."""

import os
import sqlite3
import subprocess

import pytest

from extframework import db
from tests.support.keys import key_rows
from tests.support.processes import ROOT, VENV_BIN, flask_cli


@pytest.fixture
def instance(tmp_path):
    path = tmp_path / "instance"
    assert flask_cli(path, "init-db").returncode == 0
    return path


def test_init_db_is_idempotent_and_keeps_data(instance):
    created = flask_cli(
        instance, "users", "create", "a@example.com", env={"EXTFW_PASSWORD": "password1"}
    )
    assert created.returncode == 0, created.stderr
    again = flask_cli(instance, "init-db")
    assert again.returncode == 0 and "up to date" in again.stdout
    with sqlite3.connect(instance / "extframework.sqlite3") as conn:
        assert conn.execute("SELECT email FROM user").fetchall() == [("a@example.com",)]
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (len(db.MIGRATIONS),)
        ]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_users_create_with_role_operator_and_tenant(instance):
    assert flask_cli(instance, "tenants", "create", "acme").returncode == 0
    result = flask_cli(
        instance,
        "users",
        "create",
        "Boss@Example.com",
        "--role",
        "admin",
        "--operator",
        "--tenant",
        "acme",
        env={"EXTFW_PASSWORD": "password1"},
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(instance / "extframework.sqlite3") as conn:
        row = conn.execute(
            "SELECT u.email, u.role, u.is_operator, t.slug, u.password_hash"
            " FROM user u JOIN tenant t ON t.id = u.tenant_id"
        ).fetchone()
    assert row[:4] == ("boss@example.com", "admin", 1, "acme")
    assert row[4].startswith("scrypt:") and "password1" not in row[4]


def test_users_create_reads_the_password_from_a_prompt(instance):
    result = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "app", "users", "create", "p@example.com"],
        cwd=ROOT,
        env={**os.environ, "EXTFW_INSTANCE_PATH": str(instance)},
        input="password1\npassword1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Created user p@example.com" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "create", "not-an-email"], "email"),
        (["users", "create", "x@example.com", "--tenant", "nope"], "No tenant 'nope'"),
        (["tenants", "create", "Bad Slug"], "lowercase"),
    ],
)
def test_cli_refusals_are_one_clear_line(instance, args, message):
    result = flask_cli(instance, *args, env={"EXTFW_PASSWORD": "password1"})
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_duplicate_user_and_tenant_are_refused(instance):
    env = {"EXTFW_PASSWORD": "password1"}
    assert flask_cli(instance, "users", "create", "d@example.com", env=env).returncode == 0
    dup = flask_cli(instance, "users", "create", "D@example.com", env=env)
    assert dup.returncode != 0 and "exists already" in dup.stderr
    assert flask_cli(instance, "tenants", "create", "acme").returncode == 0
    assert "exists already" in flask_cli(instance, "tenants", "create", "acme").stderr


def test_bootstrap_admin_creates_one_operator_once(instance):
    first = flask_cli(instance, "users", "bootstrap-admin", env={"EXTFW_ADMIN_PASSWORD": ""})
    assert first.returncode == 0 and "shown once" in first.stdout
    second = flask_cli(instance, "users", "bootstrap-admin")
    assert "no admin created" in second.stdout
    with sqlite3.connect(instance / "extframework.sqlite3") as conn:
        assert conn.execute("SELECT count(*), max(is_operator) FROM user").fetchone() == (1, 1)


def test_keys_rotate_adds_a_key_to_the_jwks(instance):
    before = key_rows(instance / "extframework.sqlite3")
    result = flask_cli(instance, "keys", "rotate")
    assert result.returncode == 0 and "New ES256 signing key" in result.stdout
    after = key_rows(instance / "extframework.sqlite3")
    assert len(after) == len(before) + 1
    # Published now, signing only after the default publish delay (tests/test_key_rollover.py).
    assert after[-1]["sign_from"] == after[-1]["created_at"] + 90


def test_secrets_are_generated_owner_only(instance):
    assert (instance / "secret_key").stat().st_mode & 0o077 == 0
