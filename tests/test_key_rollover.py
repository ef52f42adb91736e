"""Signing keys roll over without breaking a plugin that caches the JWKS (SPEC §4, issue 12).

A rotation publishes the new key at once and signs with it only after KEY_PUBLISH_DELAY_S;
``--now`` signs at once and withdraws the old key. Unit tests move a clock; the live tests run
the real core under gunicorn with two workers, PyJWT's ``PyJWKClient`` and Node's ``jose``.
"""

import json
import math
import re
import shutil
import subprocess
import threading
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from extframework.config import DEFAULTS, JWKS_MAX_AGE_S
from extframework.db import database
from extframework.errors import Invalid, Unauthorized
from extframework.models import AuditEvent, SigningKeyRow
from extframework.services import signing_keys, tokens
from tests.support.keys import key_rows, key_store
from tests.support.processes import (
    VENV_BIN,
    Process,
    core_env,
    flask_cli,
    free_port,
    login_session,
)
from tests.support.shell_fixtures import PASSWORD as DEMO_PASSWORD
from tests.support.shell_fixtures import Demo
from tests.test_live_core import NODE_DIR
from tests.test_tokens import CLAIMS, ISSUER

DELAY_S = 90.0
TTL_S = 60


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 1_900_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(app, clock):
    return key_store("ES256", TTL_S, clock=clock)


def private_key_of(kid: str) -> str | None:
    with database.connection_context():
        return SigningKeyRow.get(SigningKeyRow.kid == kid).private_key


def published(store) -> list[str]:
    return [key["kid"] for key in store.jwks()["keys"]]


def minted_kid(store) -> str:
    return jwt.get_unverified_header(tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS))["kid"]


# --- key states, with a movable clock ---------------------------------------------------------


def test_a_rotated_key_is_published_at_once_and_signs_only_after_the_delay(store, clock):
    old = store.signing_key().kid
    new = store.rotate(delay_s=DELAY_S).kid
    assert published(store) == [old, new]
    assert minted_kid(store) == old
    clock.advance(DELAY_S - 0.001)
    assert minted_kid(store) == old
    clock.advance(0.001)
    assert minted_kid(store) == new
    # The old key signed until now: its tokens live TTL_S longer, and so does its public key.
    clock.advance(TTL_S)
    assert published(store) == [old, new]
    clock.advance(0.001)
    assert published(store) == [new]


def test_a_token_signed_before_the_switch_verifies_after_it(store, clock):
    token = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    store.rotate(delay_s=DELAY_S)
    clock.advance(DELAY_S + 1)
    assert tokens.verify(store, token, issuer=ISSUER, audience="acme-billing")["sub"] == "7"


def test_every_process_switches_at_the_same_moment_without_rereading(store, clock):
    """The switch is a timestamp in the key's row, not an event in one process's memory."""
    other_worker = key_store("ES256", TTL_S, clock=clock, reload_s=3600)
    old = other_worker.signing_key().kid
    new = store.rotate(delay_s=DELAY_S).kid
    other_worker._loaded_at = None  # its next use re-reads, as one does after RELOAD_S
    assert other_worker.signing_key().kid == old and published(other_worker) == [old, new]
    clock.advance(DELAY_S)
    # Nothing is read or written at the switch: the copy read before it already knows when.
    assert store.signing_key().kid == other_worker.signing_key().kid == new


def test_emergency_rotation_signs_at_once_and_withdraws_the_old_key(store):
    old = store.signing_key().kid
    old_token = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    rotation = store.rotate(delay_s=DELAY_S, now=True)
    assert minted_kid(store) == rotation.kid
    assert published(store) == [rotation.kid]
    assert rotation.withdrawn == [old]
    assert private_key_of(old) is None
    with pytest.raises(Unauthorized, match="not signed by a key of this core"):
        tokens.verify(store, old_token, issuer=ISSUER, audience="acme-billing")


def test_emergency_rotation_also_withdraws_a_key_still_waiting_to_sign(store):
    old = store.signing_key().kid
    waiting = store.rotate(delay_s=DELAY_S).kid
    rotation = store.rotate(delay_s=DELAY_S, now=True)
    assert rotation.withdrawn == [old, waiting]
    assert published(store) == [rotation.kid] and minted_kid(store) == rotation.kid


def test_a_second_rotation_during_the_delay_never_signs_before_the_first(store, clock):
    old = store.signing_key().kid
    first = store.rotate(delay_s=DELAY_S)
    clock.advance(10)
    second = store.rotate(delay_s=0)
    assert second.sign_from == first.sign_from
    assert minted_kid(store) == old
    clock.advance(DELAY_S)
    assert minted_kid(store) == second.kid
    assert published(store) == [old, first.kid, second.kid]


def test_expired_keys_lose_their_private_key_at_the_next_rotation(store, clock):
    old = store.signing_key().kid
    store.rotate(delay_s=DELAY_S)
    clock.advance(DELAY_S + TTL_S + 1)
    assert private_key_of(old) is not None
    rotation = store.rotate(delay_s=DELAY_S)
    assert rotation.withdrawn == [old]
    assert private_key_of(old) is None
    assert old not in published(store)


def test_negative_publish_delay_is_refused_and_changes_nothing(app, store):
    before = key_rows(app.config["DATABASE"])
    with pytest.raises(Invalid, match="0 s or more"):
        store.rotate(delay_s=-1)
    assert key_rows(app.config["DATABASE"]) == before


def test_status_tells_where_a_rotation_stands(store, clock):
    first = store.signing_key().kid
    second = store.rotate(delay_s=DELAY_S).kid
    t0 = clock()

    def states():
        return {row["kid"]: row["state"] for row in store.status()}

    assert states() == {first: "signing", second: "waiting"}
    clock.advance(DELAY_S)
    assert states() == {first: "retired", second: "signing"}
    rows = {row["kid"]: row for row in store.status()}
    assert rows[first]["signs_until"] == rows[second]["signs_from"] == t0 + DELAY_S
    assert rows[first]["unpublished_at"] == t0 + DELAY_S + TTL_S
    assert rows[second]["published_at"] == t0 and rows[second]["signs_until"] is None
    clock.advance(TTL_S + 1)
    assert states() == {first: "expired", second: "signing"}
    third = store.rotate(delay_s=DELAY_S, now=True).kid
    assert states() == {first: "withdrawn", second: "withdrawn", third: "signing"}
    why = {row["kid"]: row["withdrawn_why"] for row in store.status()}
    assert why == {first: "its tokens have expired", second: "emergency rotation", third: None}


def _legacy_folder(directory, clock) -> list[dict]:
    """Write <instance>/keys as the core kept it before the keys moved into the database."""
    directory.mkdir()
    entries = []
    for algorithm, created in (("RS256", clock() - 5), ("ES256", clock())):
        key = signing_keys.KeyStore(signing_keys.Sealer("x"), algorithm, TTL_S)._generate(created)
        (directory / f"{key['kid']}.pem").write_bytes(key["pem"])
        entries.append({"kid": key["kid"], "alg": algorithm, "created_at": created})
    entries[0]["retired_at"] = entries[1]["created_at"]  # a keyset written before sign_from
    (directory / "keyset.json").write_text(json.dumps(entries))
    return entries


def test_keys_kept_in_the_instance_folder_are_imported_with_their_kids(app, tmp_path, clock):
    """Existing installations: the first start with keys in the database imports the folder,
    so tokens already issued verify, and the old key keeps signing until it is rotated."""
    legacy = _legacy_folder(tmp_path / "keys", clock)
    old_pem = (tmp_path / "keys" / f"{legacy[1]['kid']}.pem").read_bytes()
    old_key = serialization.load_pem_private_key(old_pem, password=None)
    claims = tokens.request_claims(ttl_s=60, **CLAIMS)
    issued = jwt.encode(claims, old_key, algorithm="ES256", headers={"kid": legacy[1]["kid"]})
    reader = key_store("ES256", TTL_S, clock=clock, legacy_folder=tmp_path / "keys")
    assert published(reader) == [legacy[0]["kid"], legacy[1]["kid"]]
    assert reader.signing_key().kid == legacy[1]["kid"]
    assert [k["alg"] for k in reader.jwks()["keys"]] == ["RS256", "ES256"]  # kept until rotated
    assert tokens.verify(reader, issued, issuer=ISSUER, audience="acme-billing")["sub"] == "7"
    # Imported once: a second start, or another host, reads the rows, not the folder.
    (tmp_path / "keys" / "keyset.json").unlink()
    assert published(key_store("ES256", TTL_S, clock=clock)) == published(reader)


# --- the CLI and the app ----------------------------------------------------------------------


def test_new_installations_sign_with_es256_and_wait_longer_than_the_jwks_max_age(client):
    assert DEFAULTS["JWT_ALGORITHM"] == "ES256"
    assert DEFAULTS["KEY_PUBLISH_DELAY_S"] > JWKS_MAX_AGE_S
    response = client.get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == f"public, max-age={JWKS_MAX_AGE_S}"
    [key] = response.get_json()["keys"]
    assert (key["kty"], key["crv"], key["alg"]) == ("EC", "P-256", "ES256")


def test_keys_rotate_publishes_now_signs_later_and_is_audited(app, client, runner):
    store = app.extensions["extframework.keys"]
    old = store.signing_key().kid
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    new = re.search(r"signing key (\w+), published now", result.output).group(1)
    assert "signs from" in result.output and "Warning" not in result.output
    assert [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]] == [
        old,
        new,
    ]
    assert store.signing_key().kid == old
    with app.app_context(), database.connection_context():
        event = AuditEvent.get(AuditEvent.action == "keys.rotate")
    assert (event.actor, event.target) == ("cli", f"key:{new}")
    assert event.detail["alg"] == "ES256" and event.detail["withdrawn"] == []


def test_keys_rotate_now_withdraws_the_old_key_and_is_audited(app, client, runner):
    store = app.extensions["extframework.keys"]
    old = store.signing_key().kid
    result = runner.invoke(args=["keys", "rotate", "--now"])
    assert result.exit_code == 0, result.output
    assert f"withdrawn from the JWKS at once: {old}" in result.output
    [key] = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert key["kid"] == store.signing_key().kid != old
    with app.app_context(), database.connection_context():
        event = AuditEvent.get(AuditEvent.action == "keys.rotate_now")
    assert event.detail["withdrawn"] == [old]


def test_keys_rotate_warns_when_the_delay_is_shorter_than_the_jwks_max_age(app, runner):
    app.config["KEY_PUBLISH_DELAY_S"] = 5
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0 and "Warning: KEY_PUBLISH_DELAY_S (5 s)" in result.output


@pytest.mark.parametrize(
    ("delay", "message"), [(-3, "0 s or more"), ("soon", "must be a number of seconds")]
)
def test_keys_rotate_refuses_a_bad_delay_and_changes_nothing(app, runner, delay, message):
    app.config["KEY_PUBLISH_DELAY_S"] = delay
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 1 and message in result.output
    assert len(app.extensions["extframework.keys"].status()) == 1


def test_keys_list_shows_each_key_and_its_state(app, runner):
    runner.invoke(args=["keys", "rotate"])
    runner.invoke(args=["keys", "rotate", "--now"])
    lines = runner.invoke(args=["keys", "list"]).output.splitlines()
    assert lines[0].split() == [
        "kid",
        "alg",
        "state",
        "published",
        "signs",
        "from",
        "signs",
        "until",
        "unpublished",
    ]
    states = [line.split()[2] for line in lines[1:]]
    assert states == ["withdrawn", "withdrawn", "signing"]
    assert lines[1].endswith("(emergency rotation)")


# --- the real core: two gunicorn workers, PyJWT's and jose's cached JWKS ----------------------

PASSWORD = "a long enough password"


class CountingJWKClient(jwt.PyJWKClient):
    """PyJWT's JWKS client, counting the JWKS requests it makes."""

    fetches = 0

    def fetch_data(self):
        self.fetches += 1
        return super().fetch_data()


class NodeVerifier:
    """A long-running Node process verifying tokens with one cached remote JWKS."""

    def __init__(self, jwks_url: str, issuer: str, audience: str) -> None:
        self.process = subprocess.Popen(
            ["node", "cached_verifier.mjs", jwks_url, issuer, audience],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def verify(self, token: str) -> dict:
        self.process.stdin.write(token + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


@pytest.fixture
def node_ready():
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "jose").exists():
        pytest.fail("node and tests/node/node_modules/jose are needed: run `make test`")


@pytest.fixture
def live_core(tmp_path, request):
    """The core under gunicorn (-w 2 unless parametrized), logging which worker served what."""
    workers = getattr(request, "param", 2)
    instance, port = tmp_path / "instance", free_port()
    env = core_env(instance, port)
    assert flask_cli(instance, "init-db", env=env).returncode == 0
    created = flask_cli(
        instance, "users", "create", "ops@example.com", env={"EXTFW_PASSWORD": PASSWORD}
    )
    assert created.returncode == 0, created.stderr
    core = Process(
        [
            str(VENV_BIN / "gunicorn"),
            *("-w", str(workers), "-b", f"127.0.0.1:{port}"),
            *("--access-logfile", "-", "--access-logformat", "served %(p)s %(q)s"),
            "app:app",
        ],
        port,
        "/healthz",
        env=env,
        log_path=tmp_path / "core.log",
    )
    core.instance = instance
    yield core
    core.stop()


def user_jwt(core, n: int) -> str:
    response = requests.post(
        f"{core.url}/api/auth/token?n={n}",
        json={"email": "ops@example.com", "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def worker_of(core, n: int) -> str:
    """Return the pid of the gunicorn worker that answered request ``n``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        match = re.search(rf"^served <(\d+)> n={n}$", core.logs(), re.MULTILINE)
        if match:
            return match.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no access log line for request {n}")


def keyset(core) -> list[dict]:
    return key_rows(core.instance / "extframework.sqlite3")


def side(claims: dict, sign_from: float) -> str | None:
    """Say whether a token was minted before or after ``sign_from``, by its own ``iat``."""
    if claims["iat"] < math.floor(sign_from):
        return "before"
    if claims["iat"] >= math.ceil(sign_from):
        return "after"
    return None  # minted in the very second sign_from falls in: either key is right


@pytest.mark.usefixtures("node_ready")
def test_cached_jwks_verifiers_see_no_401_across_a_rotation_and_both_workers_switch_together(
    live_core,
):
    core, delay_s = live_core, 6
    jwks_url = f"{core.url}/.well-known/jwks.json"
    # Each caches the JWKS for 60 s, refetching for an unknown kid after a 30 s cooldown.
    cached = CountingJWKClient(jwks_url, lifespan=60)
    node = NodeVerifier(jwks_url, core.url, core.url)
    try:
        first = user_jwt(core, 0)
        old = jwt.get_unverified_header(first)["kid"]
        assert cached.get_signing_key_from_jwt(first).key_id == old
        assert node.verify(first)["ok"]

        rotated = flask_cli(
            core.instance, "keys", "rotate", env={"EXTFW_KEY_PUBLISH_DELAY_S": str(delay_s)}
        )
        assert rotated.returncode == 0, rotated.stderr
        # Tokens minted right after the rotation verify with the copies cached before it.
        right_after = user_jwt(core, 1)
        assert cached.get_signing_key_from_jwt(right_after).key_id == old
        assert node.verify(right_after) == {"ok": True, "kid": old, "fetches": 1}

        new, sign_from = keyset(core)[-1]["kid"], keyset(core)[-1]["sign_from"]
        assert [k["kid"] for k in requests.get(jwks_url, timeout=10).json()["keys"]] == [old, new]

        # Two clients keep both workers busy until each worker has answered on both sides.
        seen: list[tuple[str, dict, str, str]] = []  # (worker pid, claims, kid, token)
        numbers, lock = iter(range(2, 10_000)), threading.Lock()
        deadline = time.monotonic() + delay_s + 40

        def workers_by_side() -> dict[str | None, set[str]]:
            with lock:
                result: dict[str | None, set[str]] = {"before": set(), "after": set()}
                for pid, claims, _, _ in seen:
                    result.setdefault(side(claims, sign_from), set()).add(pid)
                return result

        def done() -> bool:
            got = workers_by_side()
            return len(got["before"]) == 2 and len(got["after"]) == 2

        def client() -> None:
            while not done() and time.monotonic() < deadline:
                with lock:
                    n = next(numbers)
                token = user_jwt(core, n)
                claims = jwt.decode(token, options={"verify_signature": False})
                kid = jwt.get_unverified_header(token)["kid"]
                pid = worker_of(core, n)
                with lock:
                    seen.append((pid, claims, kid, token))
                time.sleep(0.1)  # pacing only: the machine is shared

        threads = [threading.Thread(target=client) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert done(), workers_by_side()

        for pid, claims, kid, _ in seen:
            expected = {"before": old, "after": new, None: kid}[side(claims, sign_from)]
            assert kid == expected, (pid, claims["iat"], sign_from, kid)

        # Every token the old key signed verifies with the copies cached before the rotation.
        for _, _, kid, token in seen:
            if kid == old:
                assert cached.get_signing_key_from_jwt(token).key_id == old
                assert node.verify(token) == {"ok": True, "kid": old, "fetches": 1}
        assert cached.fetches == 1

        # After the switch, a verifier that refetches (its copy expired) accepts the new kid.
        after = next(token for _, _, kid, token in seen if kid == new)
        signing = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(after)
        assert jwt.decode(after, signing.key, algorithms=["ES256"], audience=core.url)["sub"]
        fresh_node = NodeVerifier(jwks_url, core.url, core.url)
        try:
            assert fresh_node.verify(after) == {"ok": True, "kid": new, "fetches": 1}
            assert fresh_node.verify(first)["ok"]  # the old key stays published
        finally:
            fresh_node.close()
    finally:
        node.close()


@pytest.mark.usefixtures("node_ready")
@pytest.mark.parametrize("live_core", [1], indirect=True)
def test_emergency_rotation_over_http_signs_at_once_and_drops_the_old_key(live_core):
    core = live_core
    jwks_url = f"{core.url}/.well-known/jwks.json"
    before = user_jwt(core, 0)
    old = jwt.get_unverified_header(before)["kid"]
    rotated = flask_cli(core.instance, "keys", "rotate", "--now")
    assert rotated.returncode == 0, rotated.stderr
    assert f"withdrawn from the JWKS at once: {old}" in rotated.stdout
    kids = [k["kid"] for k in requests.get(jwks_url, timeout=10).json()["keys"]]
    assert old not in kids and len(kids) == 1
    assert jwt.get_unverified_header(user_jwt(core, 1))["kid"] == kids[0]
    # A token the withdrawn key signed no longer verifies, at the core or at a plugin.
    me = requests.get(
        f"{core.url}/api/auth/me", headers={"Authorization": f"Bearer {before}"}, timeout=10
    )
    assert me.status_code == 401
    node = NodeVerifier(jwks_url, core.url, core.url)
    try:
        assert node.verify(before)["code"] == "ERR_JWKS_NO_MATCHING_KEY"
    finally:
        node.close()
    listed = flask_cli(core.instance, "keys", "list")
    assert re.search(rf"^{old}\s+ES256\s+withdrawn\b", listed.stdout, re.MULTILINE)
    assert re.search(rf"^{kids[0]}\s+ES256\s+signing\b", listed.stdout, re.MULTILINE)


# --- the demo plugins, unchanged, across a rotation -------------------------------------------


def assert_views_served(session: requests.Session, url: str) -> None:
    for view in ("/plugin-proxy/notebook/notes", "/plugin-proxy/tasks/tasks"):
        response = session.get(url + view, timeout=30)
        assert response.status_code == 200 and "panel-error" not in response.text, (
            view,
            response.status_code,
            re.findall(r'data-fault="[^"]*"', response.text),
        )


@pytest.mark.usefixtures("node_ready")
def test_the_demo_plugins_keep_serving_across_a_rotation(tmp_path):
    """Both demo plugins refetch the JWKS for an unknown kid at most every 5 s (SDK, jose)."""
    demo = Demo(tmp_path)
    try:
        demo.start_python_plugin()
        demo.start_node_plugin()
        demo.wait_for_state("notebook", "active")
        demo.wait_for_state("tasks", "active")
        session = login_session(demo.url, demo.admin, DEMO_PASSWORD)
        assert_views_served(session, demo.url)  # each plugin has fetched the JWKS now

        # Longer than the plugins' 5 s refetch cooldown, as 90 s is than 30 s: their last fetch was
        # before the rotation, so an unknown kid after sign_from finds the cooldown over.
        delay_s = 6
        rotated = flask_cli(
            demo.instance, "keys", "rotate", env={"EXTFW_KEY_PUBLISH_DELAY_S": str(delay_s)}
        )
        assert rotated.returncode == 0, rotated.stderr
        assert_views_served(session, demo.url)  # today: 401 from both, shown as a panel

        sign_from = key_rows(demo.instance / "extframework.sqlite3")[-1]["sign_from"]
        deadline = time.monotonic() + delay_s + 30
        while time.time() <= sign_from + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert time.time() > sign_from + 1
        assert_views_served(session, demo.url)  # signed with the new key, refetched and verified
    finally:
        demo.stop()
