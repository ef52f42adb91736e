"""Random and mutated manifests at POST /api/registry/plugins: never a 500, never half a plugin."""

import copy
import json
import sqlite3

import pytest
from hypothesis import HealthCheck as Check
from hypothesis import given, settings
from hypothesis import strategies as st

from extframework.db import database
from extframework.models import Collection, ManifestVersion, Plugin, Route, Transition
from tests.support.processes import free_port
from tests.support.registry_fixtures import sample_manifest

EXPECTED = {201, 400, 409, 413, 502}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
plugin_ids = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4}){0,2}", fullmatch=True)
interesting_strings = st.sampled_from(
    [
        "",
        "/",
        "/x/../y",
        "/items/:id",
        "GET",
        "POST",
        "admin",
        "iframe",
        "1.0.0",
        "2.0.0-rc.1",
        "01.0.0",
        "acme-billing",
        "Acme",
        "ftp://127.0.0.1/",
        "http://",
        "https://[::1",
        "http://127.0.0.1:0/x",
        "items",
        "string",
        "#/$defs/x",
        "https://evil.test/s.json",
        "a\n",
    ]
)
mutant_values = json_values | interesting_strings


def paths_in(value, prefix=()):
    """Every (path, value) inside a JSON value, the root included."""
    yield prefix, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_in(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths_in(child, (*prefix, index))


def parent_of(root, path):
    node = root
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def manifests(draw, urls):
    """A valid manifest, then up to five random mutations of its parts."""
    manifest = sample_manifest(
        plugin_id=draw(plugin_ids),
        base_url=draw(st.sampled_from(urls)),
        version=draw(st.sampled_from(["1.0.0", "0.1.0", "3.2.1-beta.1+build.5"])),
    )
    if draw(st.booleans()):
        manifest["data_schemas"].append(
            {"collection": "notes", "schema": {"type": "object"}, "indexes": []}
        )
    for _ in range(draw(st.integers(0, 5))):
        path, _ = draw(st.sampled_from(list(paths_in(manifest))))
        operation = draw(st.sampled_from(["replace", "delete", "duplicate", "add"]))
        if not path:
            if operation == "replace":
                manifest = draw(mutant_values)
            continue
        parent = parent_of(manifest, path)
        key = path[-1]
        if operation == "replace":
            parent[key] = draw(mutant_values)
        elif operation == "delete":
            del parent[key]
        elif operation == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8) | interesting_strings)] = draw(mutant_values)
        if not isinstance(manifest, dict):
            break
    return manifest


def bodies(urls):
    as_json = st.one_of(manifests(urls), json_values).map(lambda m: json.dumps(m).encode())
    corrupted = st.tuples(manifests(urls), st.integers(0, 400), st.binary(max_size=3)).map(
        lambda t: _corrupt(json.dumps(t[0]).encode(), t[1], t[2])
    )
    return as_json | corrupted


def _corrupt(raw: bytes, at: int, junk: bytes) -> bytes:
    at = at % max(len(raw), 1)
    return raw[:at] + junk + raw[at + 1 :]


def consistent(app) -> int:
    """Check that every stored plugin is whole; return how many there are."""
    with app.app_context(), database.connection_context():
        plugins = list(Plugin.select())
        routes = sum(
            1 + len(item.get("actions", [])) for p in plugins for item in p.manifest["menu_items"]
        )
        declared = {
            (p.id, entry["collection"]) for p in plugins for entry in p.manifest["data_schemas"]
        }
        index_count = sum(
            len(entry["indexes"]) for p in plugins for entry in p.manifest["data_schemas"]
        )
        assert Route.select().count() == routes
        assert {(c.plugin_id, c.name) for c in Collection.select()} == declared
        assert ManifestVersion.select().count() == len(plugins)
        assert [(t.from_state, t.to_state) for t in Transition.select()] == [
            (None, "registered")
        ] * len(plugins)
        assert all(p.tokens.count() == 1 and p.state == "registered" for p in plugins)
    with sqlite3.connect(app.config["DATABASE"]) as conn:
        (indexes,) = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='index' AND name LIKE 'ixdoc_%'"
        ).fetchone()
    assert indexes == index_count
    return len(plugins)


@pytest.fixture
def urls(healthy_plugin_server):
    dead = f"http://127.0.0.1:{free_port()}"
    return [healthy_plugin_server.url, healthy_plugin_server.url + "/sub/", dead]


def test_random_and_mutated_manifests_never_crash_or_half_store(app, client, enrolment_key, urls):
    created = 0
    seen: set[int] = set()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[Check.function_scoped_fixture, Check.too_slow],
    )
    @given(body=bodies(urls))
    def check(body: bytes) -> None:
        nonlocal created
        response = client.post(
            "/api/registry/plugins",
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {enrolment_key}"},
        )
        seen.add(response.status_code)
        assert response.status_code in EXPECTED, (response.status_code, response.get_data())
        if response.status_code == 201:
            created += 1
            assert response.get_json()["plugin_token"].startswith("efpt_")
        else:
            problem = response.get_json()
            assert response.mimetype == "application/problem+json"
            assert problem["status"] == response.status_code and problem["detail"]
            if response.status_code == 400 and "errors" in problem:
                for e in problem["errors"]:
                    assert set(e) == {"pointer", "keyword", "message"} and e["message"]
                    assert e["pointer"] == "" or e["pointer"].startswith("/")
        assert consistent(app) == created

    check()
    # The generator reaches both sides: some manifests register, most are refused.
    assert 201 in seen and 400 in seen
