"""The contract checker cannot be made to stall the core (issue 16 review): a whole check has
one deadline, and one plugin runs one check at a time."""

import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from extframework.errors import BadRequest
from extframework.services import contract_tokens
from extframework.services.manifest import validate_manifest
from tests.support.registry_fixtures import sample_manifest
from tests.test_contract_check import broken_manifest, broken_plugin, failed, run_checks
from tests.test_plugin_deadlines import start_slow_plugin

__all__ = ["broken_plugin"]  # the fixture, shared with tests/test_contract_check.py


def many_slow_views(url: str, count: int) -> dict:
    manifest = broken_manifest(url)
    manifest["menu_items"] = [
        {"id": f"v{i}", "label": f"V{i}", "view": {"method": "GET", "path": f"/items{i}"}}
        for i in range(count)
    ] + [{"id": "items", "label": "Items", "view": {"method": "GET", "path": "/items"}}]
    return manifest


def test_a_plugin_with_many_hanging_views_is_checked_within_the_budget(
    app, broken_plugin, make_plugin
):
    # 100 views whose valid call hangs (each redirects to /items, which answers after 60 s):
    # one after another, 16 at a time, they took ceil(101 / 16) x PROXY_TIMEOUT_S = 35 s.
    manifest = many_slow_views(broken_plugin("slow").url, 99)
    make_plugin(manifest)
    started = time.monotonic()
    results = run_checks(app, manifest, PROXY_TIMEOUT_S=5.0, CONTRACT_CHECK_TIMEOUT_S=6.0)
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"the check took {elapsed:.1f} s"  # a liveness bound, not a timing
    assert "view-html" in failed(results)
    failures = [r["detail"] for r in results if not r["ok"]]
    # every failure is a hanging view or a call the budget left no time for; the rest passed
    assert all("no answer within" in d or "CONTRACT_CHECK_TIMEOUT_S" in d for d in failures), [
        d for d in failures if "no answer within" not in d and "CONTRACT_CHECK_TIMEOUT_S" not in d
    ]
    assert any("CONTRACT_CHECK_TIMEOUT_S" in d for d in failures), failures
    assert {r["check"] for r in results if r["ok"]} >= {"manifest", "core", "health"}


def test_a_plugin_runs_one_check_at_a_time(app, broken_plugin, make_plugin):
    """Else a plugin's token could hold every server thread with checks of hanging views."""
    manifest = broken_manifest(broken_plugin("slow").url)
    _, token = make_plugin(manifest)
    app.config.update(PROXY_TIMEOUT_S=3.0, CONTRACT_CHECK_TIMEOUT_S=4.0)
    url = "/api/registry/plugins/broken/contract-check"
    headers = {"Authorization": f"Bearer {token}"}
    answers = []

    def run() -> None:
        answers.append(app.test_client().post(url, json=manifest, headers=headers))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [200, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "4"
    assert "already running" in refused.get_json()["detail"]
    # the lock is released: a check after both runs again
    assert app.test_client().post(url, json=manifest, headers=headers).status_code == 200


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_the_forged_key_is_made_once_not_per_view(algorithm):
    """An RSA key takes ~0.2 s to generate: one per view made 100 views cost 20 s of CPU, spent
    in the request's thread before the check's deadline started."""
    if algorithm == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    forged = contract_tokens._other_key(key)
    assert forged is contract_tokens._other_key(key)
    assert type(forged) is type(key) and forged.key_size == key.key_size
    assert forged.public_key().public_numbers() != key.public_key().public_numbers()


def test_a_plugin_runs_one_dry_run_at_a_time(app, make_plugin, tmp_path):
    """A dry run moving base_url on its origin probes the new /health: one that hangs held a
    server thread for HEALTH_TIMEOUT_S per call, and a plugin may send as many as it likes."""
    slow = start_slow_plugin(tmp_path)
    try:
        _, token = make_plugin(sample_manifest(base_url=slow.url))
        app.config.update(HEALTH_TIMEOUT_S=3.0)
        moved = sample_manifest(version="1.1.0", base_url=slow.url + "/img")  # /img/health hangs
        url = "/api/registry/plugins/test-plugin/manifest-check"
        headers = {"Authorization": f"Bearer {token}"}
        answers = []

        def run() -> None:
            answers.append(app.test_client().post(url, json=moved, headers=headers))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(a.status_code for a in answers) == [200, 429]
        verdict = next(a for a in answers if a.status_code == 200).get_json()
        assert (verdict["outcome"], verdict["status"]) == ("refused", 502)
    finally:
        slow.kill()


def test_a_valid_token_for_an_installed_plugin_goes_only_to_its_registered_base_url(
    app, broken_plugin, make_plugin
):
    """An operator checking someone's manifest that names an installed plugin_id and another
    base_url must not hand that URL a request JWT the installed plugin would accept."""
    make_plugin(broken_manifest(broken_plugin("good").url))
    elsewhere = broken_manifest(broken_plugin("good").url)  # accepts aud 'broken', too
    elsewhere["version"] = "1.1.0"
    results = run_checks(app, elsewhere)
    views = [r for r in results if r["check"] == "view-html"]
    assert views and all(r["level"] == "warn" for r in views), views
    assert all("registered base_url" in r["detail"] for r in views)
    assert not any(r["check"] == "fragment" for r in results)
    # the forged and wrong tokens, which no plugin may accept, are still sent and judged
    assert {r["check"] for r in results if r["level"] == "pass"} >= {"auth-forged-key"}


def test_the_other_audience_can_never_be_a_plugins_id():
    """Else a plugin registered under that id would accept the core-signed 'another audience'
    token every check sends to the checked URL (with the role that manifest declares)."""
    with pytest.raises(BadRequest):
        validate_manifest(sample_manifest(plugin_id=contract_tokens.OTHER_AUDIENCE))
