"""Issue 11's closing check: one plugin attacks on every front at once, and the core stays up.

While a hostile plugin's storage writes hit a backtracking pattern, an exponential schema is
offered for registration, and people open a view whose body trickles and a fragment nested
100,000 deep, `/healthz` and another plugin's view keep answering within 2 s (a liveness
bound, not a benchmark).
"""

import sys
import threading
import time

import requests

from tests.support.processes import Process, free_port, login_session
from tests.support.shell_fixtures import PASSWORD, Demo

ATTACK_S = 6.0
BACKTRACKING_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}},
}
LIVENESS_S = 2.0


def exponential_schema(depth: int = 24) -> dict:
    """Each level is anyOf two $refs to the level below: 2^depth paths, in about 1 KB."""
    defs = {f"l{depth}": {"type": "string"}}
    for level in range(depth - 1, -1, -1):
        below = {"$ref": f"#/$defs/l{level + 1}"}
        defs[f"l{level}"] = {"anyOf": [below, {"allOf": [below]}]}
    return {"type": "object", "properties": {"x": {"$ref": "#/$defs/l0"}}, "$defs": defs}


def attacker_manifest(base_url: str, plugin_id: str = "attacker", schema: dict | None = None):
    views = [("trickle", "/trickle"), ("deep", "/deep")]
    return {
        "plugin_id": plugin_id,
        "name": "Attacker",
        "version": "1.0.0",
        "base_url": base_url,
        "menu_items": [
            *({"id": i, "label": i, "view": {"method": "GET", "path": p}} for i, p in views),
        ],
        "data_schemas": [
            {
                "collection": "names",
                "schema": schema or BACKTRACKING_SCHEMA,
            }
        ],
    }


def test_core_and_other_plugins_stay_responsive_while_a_plugin_attacks(tmp_path):
    demo = Demo(tmp_path, PROXY_TIMEOUT_S=2)
    attacker = None
    try:
        demo.start_python_plugin()
        port = free_port()
        attacker = Process(
            [sys.executable, "tests/support/plugins/attacker_plugin.py"],
            port,
            "/health",
            env={"PORT": str(port)},
        )
        registered = requests.post(
            demo.url + "/api/registry/plugins",
            json=attacker_manifest(attacker.url),
            headers={"Authorization": f"Bearer {demo.enrolment_key}"},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        plugin_token = registered.json()["plugin_token"]
        demo.wait_for_state("notebook", "active")
        demo.wait_for_state("attacker", "active")
        people = [login_session(demo.url, demo.admin, PASSWORD)]
        people.append(login_session(demo.url, demo.add_user("member@example.com"), PASSWORD))

        outcomes: dict[str, list[int]] = {}
        lock = threading.Lock()

        def attack(name: str, call) -> None:
            """Repeat one request once a second, as a person reloading a page would."""
            deadline = time.monotonic() + ATTACK_S
            while (started := time.monotonic()) < deadline:
                try:
                    status = call().status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with lock:
                    outcomes.setdefault(name, []).append(status)
                time.sleep(max(0.0, started + 1.0 - time.monotonic()))

        storage = {"Authorization": f"Bearer {plugin_token}", "X-Tenant-ID": "default"}
        attacks = [
            (
                "redos-write",
                lambda: requests.post(
                    demo.url + "/api/storage/names",
                    json={"name": "a" * 40 + "!"},
                    headers=storage,
                    timeout=30,
                ),
            ),
            (
                "exponential-schema",
                lambda: requests.post(
                    demo.url + "/api/registry/plugins",
                    json=attacker_manifest(attacker.url, "exponential", exponential_schema()),
                    headers={"Authorization": f"Bearer {demo.enrolment_key}"},
                    timeout=30,
                ),
            ),
        ]
        # One person keeps opening the trickling view, another the fragment nested 100,000
        # deep. (Many slow calls at once: tests/test_plugin_deadlines.py.)
        for person, path in zip(people, ("/trickle", "/deep"), strict=True):
            attacks.append(
                (
                    path,
                    lambda person=person, path=path: person.get(
                        demo.url + "/plugin-proxy/attacker" + path, timeout=30
                    ),
                )
            )
        threads = [threading.Thread(target=attack, args=a, daemon=True) for a in attacks]
        for thread in threads:
            thread.start()

        reader = people[1]
        checks = 0
        deadline = time.monotonic() + ATTACK_S
        while time.monotonic() < deadline:
            assert requests.get(demo.url + "/healthz", timeout=LIVENESS_S).status_code == 200
            view = reader.get(demo.url + "/plugin-proxy/notebook/notes", timeout=LIVENESS_S)
            assert view.status_code == 200 and "Notes" in view.text
            checks += 1
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        if attacker is not None:
            attacker.stop()
        demo.stop()

    assert checks >= 3
    assert set(outcomes["redos-write"]) == {422}, outcomes["redos-write"]
    assert set(outcomes["exponential-schema"]) == {400}, outcomes["exponential-schema"]
    assert set(outcomes["/trickle"]) <= {504, 503}, outcomes["/trickle"]
    assert set(outcomes["/deep"]) <= {502, 503}, outcomes["/deep"]
