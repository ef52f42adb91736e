"""What the Schemathesis run (tests/test_fuzz_api.py) found in the API, one regression test each.

Each test failed before the change it goes with.
"""

import pytest

from extframework.services import health
from tests.support.registry_fixtures import sample_manifest

PROBLEM = "application/problem+json"
BEYOND_SQLITE = str(2**63)  # one more than the largest INTEGER SQLite can hold


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


@pytest.mark.parametrize(
    "path",
    [
        f"/api/registry/pending-updates/{BEYOND_SQLITE}/approve",
        f"/api/registry/pending-updates/{BEYOND_SQLITE}/reject",
        "/api/registry/pending-updates/6932408250022977718043967225856/reject",
    ],
)
def test_a_pending_update_id_sqlite_cannot_hold_is_404_not_500(client, operator, path):
    response = client.post(path)
    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM


@pytest.mark.parametrize("verb", ["role", "deactivate", "reactivate", "password"])
def test_a_console_user_id_sqlite_cannot_hold_is_404_not_500(client, operator, verb):
    response = client.post(f"/console/users/{BEYOND_SQLITE}/{verb}", data={"role": "member"})
    assert response.status_code == 404


def test_the_largest_id_sqlite_holds_is_still_routed(client, operator):
    response = client.post(f"/api/registry/pending-updates/{2**63 - 1}/reject")
    assert response.status_code == 404
    assert "No pending update" in response.get_json()["detail"]


# A host label over 63 characters: ada parses the URL, the IDNA codec refuses to connect to it.
# (Schemathesis found it as https://000…000, a thousand zeros.)
UNCONNECTABLE = "https://" + "a" * 64 + ".test"


def test_a_base_url_no_connection_can_be_made_to_fails_the_probe_not_the_core(
    client, enrolment_key
):
    manifest = sample_manifest(base_url=UNCONNECTABLE)
    response = client.post(
        "/api/registry/plugins", json=manifest, headers={"Authorization": f"Bearer {enrolment_key}"}
    )
    assert response.status_code == 502, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    assert "not a URL the core can connect to" in response.get_json()["detail"]


def test_a_probe_of_an_unconnectable_url_is_a_failed_check():
    result = health.probe(UNCONNECTABLE, timeout_s=2)
    assert not result.ok and "not a URL the core can connect to" in result.detail
