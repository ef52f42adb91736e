"""Login throttling: failures on one account never lock a person out of another (issue 11)."""

from datetime import datetime, timedelta

import pytest
import requests

from extframework.services import accounts
from tests.support.processes import flask_cli, start_core

ADMIN = "admin@example.com"
PASSWORD = "correct horse battery"
ATTACKER = "10.0.0.66"
OFFICE = "10.0.0.1"


@pytest.fixture
def admin(make_user):
    return make_user(ADMIN, role="admin", operator=True)


@pytest.fixture
def clock(monkeypatch):
    """A clock the throttle reads and the test moves; no sleeping."""

    class Clock:
        now = datetime(2026, 6, 1, 12, 0, 0)

        def advance(self, seconds: float) -> None:
            self.now += timedelta(seconds=seconds)

    clock = Clock()
    monkeypatch.setattr(accounts, "utcnow", lambda: clock.now)
    return clock


@pytest.fixture
def slept(monkeypatch):
    """Record the delays the throttle asks for instead of sleeping them."""
    delays: list[float] = []
    monkeypatch.setattr(accounts, "_sleep", delays.append)
    return delays


def token(client, email, password, address):
    return client.post(
        "/api/auth/token",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def form_login(client, email, password, address):
    return client.post(
        "/login", data={"email": email, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


def fail(client, email, address, times):
    for i in range(times):
        response = token(client, email, f"wrong guess {i}", address)
        assert response.status_code in (401, 429), response.get_json()


def test_failures_on_unknown_emails_do_not_lock_out_the_admin_behind_the_same_address(
    client, admin, clock
):
    for i in range(10):
        assert token(client, f"nobody{i}@example.com", "guess", OFFICE).status_code == 401
    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 200
    assert form_login(client, ADMIN, PASSWORD, OFFICE).status_code == 302


def test_an_account_is_locked_for_the_address_that_failed_on_it_only(client, admin, clock):
    fail(client, ADMIN, ATTACKER, 10)
    locked = token(client, ADMIN, PASSWORD, ATTACKER)
    assert locked.status_code == 429
    assert locked.mimetype == "application/problem+json"
    assert 0 < int(locked.headers["Retry-After"]) <= 300
    assert "try again" in locked.get_json()["detail"]
    page = form_login(client, ADMIN, PASSWORD, ATTACKER)
    assert page.status_code == 429 and b"Too many failed logins" in page.data
    assert int(page.headers["Retry-After"]) > 0
    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 200


def test_unknown_emails_are_counted_as_accounts_by_their_normalised_email(client, admin, clock):
    fail(client, "Ghost@Example.com ", ATTACKER, 5)
    fail(client, "ghost@example.com", ATTACKER, 5)
    assert token(client, "ghost@example.com", "anything", ATTACKER).status_code == 429
    assert token(client, "other@example.com", "anything", ATTACKER).status_code == 401


def test_an_account_is_locked_across_addresses_past_its_own_limit(app, client, admin, clock):
    app.config["LOGIN_ACCOUNT_MAX_FAILURES"] = 20
    for n in range(4):
        fail(client, ADMIN, f"10.9.{n}.1", 5)  # under the per-address limit everywhere
    refused = token(client, ADMIN, PASSWORD, "10.9.200.1")
    assert refused.status_code == 429
    assert "this account" in refused.get_json()["detail"]
    assert int(refused.headers["Retry-After"]) > 0
    # Failures on other accounts never count toward this one.
    assert token(client, "someone@example.com", "guess", "10.9.200.1").status_code == 401


def test_the_account_lock_spares_an_address_it_logged_in_from(app, client, admin, clock):
    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 200
    app.config["LOGIN_ACCOUNT_MAX_FAILURES"] = 20
    for n in range(4):
        fail(client, ADMIN, f"10.9.{n}.1", 5)
    assert token(client, ADMIN, PASSWORD, "10.9.200.1").status_code == 429
    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 200
    clock.advance(app.config["LOGIN_KNOWN_ADDRESS_DAYS"] * 86400 + 1)
    app.config["LOGIN_WINDOW_S"] = 10**9  # keep the account's failures live, forget the address
    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 429


def test_another_address_is_not_locked_by_failures_on_another_account(
    client, admin, make_user, clock
):
    make_user("colleague@example.com")
    fail(client, "colleague@example.com", ATTACKER, 10)
    assert token(client, "colleague@example.com", PASSWORD, ATTACKER).status_code == 429
    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 200
    assert token(client, ADMIN, PASSWORD, ATTACKER).status_code == 200


def test_the_lock_ends_when_the_window_passes(app, client, admin, clock):
    fail(client, ADMIN, ATTACKER, 10)
    assert token(client, ADMIN, PASSWORD, ATTACKER).status_code == 429
    clock.advance(app.config["LOGIN_WINDOW_S"] - 1)
    assert token(client, ADMIN, PASSWORD, ATTACKER).status_code == 429
    clock.advance(2)
    assert token(client, ADMIN, "still wrong", ATTACKER).status_code == 401  # a fresh window
    assert token(client, ADMIN, PASSWORD, ATTACKER).status_code == 200


def test_a_success_clears_the_pair_but_not_the_address(app, client, admin, clock, slept):
    app.config["LOGIN_ADDRESS_SLOW_AFTER"] = 11
    fail(client, ADMIN, OFFICE, 9)
    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 200
    fail(client, ADMIN, OFFICE, 3)  # the pair starts again from zero
    assert slept == [app.config["LOGIN_ADDRESS_DELAY_S"]]  # but the address kept counting
    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 200


def test_an_address_failing_on_many_accounts_is_slowed_but_never_refused_a_correct_password(
    app, client, admin, clock, slept
):
    limit = app.config["LOGIN_ADDRESS_SLOW_AFTER"]
    for i in range(limit):
        assert token(client, f"user{i}@example.com", "guess", ATTACKER).status_code == 401
    assert slept == []
    slowed = token(client, "another@example.com", "guess", ATTACKER)
    assert slept == [app.config["LOGIN_ADDRESS_DELAY_S"]]
    assert slowed.status_code == 429
    assert "not correct" in slowed.get_json()["detail"]
    assert int(slowed.headers["Retry-After"]) >= 1
    assert token(client, ADMIN, PASSWORD, ATTACKER).status_code == 200
    assert form_login(client, ADMIN, PASSWORD, ATTACKER).status_code == 302
    assert len(slept) == 1  # correct passwords are never delayed


def test_only_one_slowed_answer_per_process_waits_at_a_time(app, client, admin, clock, slept):
    for i in range(app.config["LOGIN_ADDRESS_SLOW_AFTER"]):
        token(client, f"user{i}@example.com", "guess", ATTACKER)
    assert accounts._slowed.acquire(blocking=False)  # another request is sleeping already
    try:
        busy = token(client, "another@example.com", "guess", ATTACKER)
    finally:
        accounts._slowed.release()
    assert busy.status_code == 429 and slept == []


def test_ipv6_addresses_are_counted_by_their_64_prefix(client, admin, clock):
    for i in range(10):
        token(client, ADMIN, "guess", f"2001:db8:1:2::{i + 1:x}")
    assert token(client, ADMIN, PASSWORD, "2001:db8:1:2:ffff::1").status_code == 429
    assert token(client, ADMIN, PASSWORD, "2001:db8:1:3::1").status_code == 200


def test_rows_that_no_longer_count_are_pruned(app, client, admin, clock):
    def keys():
        with app.app_context():
            return {row.key for row in accounts.LoginThrottle.select()}

    assert token(client, ADMIN, PASSWORD, OFFICE).status_code == 200
    fail(client, "ghost@example.com", ATTACKER, 3)
    clock.advance(app.config["LOGIN_WINDOW_S"] + 1)
    fail(client, "ghost2@example.com", ATTACKER, 1)
    assert not any("ghost@" in key for key in keys())
    assert any("ghost2@" in key for key in keys())
    assert f"known:{OFFICE}|{ADMIN}" in keys()
    clock.advance(app.config["LOGIN_KNOWN_ADDRESS_DAYS"] * 86400)
    fail(client, "ghost3@example.com", ATTACKER, 1)
    assert f"known:{OFFICE}|{ADMIN}" not in keys()


@pytest.mark.timeout(120)
def test_the_real_core_lets_the_admin_in_after_failures_on_other_accounts(tmp_path):
    """Two gunicorn workers share the counts: they live in the database, not in a process."""
    core = start_core(tmp_path, workers=2)
    try:
        created = flask_cli(
            tmp_path / "instance",
            *("users", "create", ADMIN, "--role", "admin", "--operator"),
            env={"EXTFW_PASSWORD": PASSWORD},
        )
        assert created.returncode == 0, created.stderr
        session = requests.Session()

        def attempt(email, password):
            body = {"email": email, "password": password}
            return session.post(f"{core.url}/api/auth/token", json=body, timeout=30)

        for i in range(10):
            assert attempt(f"nobody{i}@example.com", "guess").status_code == 401
        assert attempt(ADMIN, PASSWORD).status_code == 200
        for i in range(10):
            assert attempt(ADMIN, f"wrong {i}").status_code == 401
        locked = attempt(ADMIN, PASSWORD)
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
        assert locked.headers["Cache-Control"] == "no-store"
    finally:
        core.stop()
