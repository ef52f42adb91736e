"""What the Schemathesis run (tests/test_fuzz_api.py) found in the API, one regression test each.

Each test failed before the change it goes with.
"""

import pytest

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
