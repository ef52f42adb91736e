"""Tests for __PLUGIN_NAME__ that need no core: fakes stand in for the verifier and storage.

Run them with `pytest` in this folder. To test the contract against a running core, use
`flask --app app plugins check manifest.json --core URL` from the core's repository.
"""

# The plugin's own module last (it is first-party here, third-party in the core's repository).
import json  # noqa: I001
import re
from pathlib import Path

import pytest
from extframework_sdk import RequestContext, RequestTokenError, StorageError

import plugin

AUTH = {"Authorization": "Bearer from-the-core"}
MANIFEST = json.loads((Path(__file__).parent / "manifest.json").read_text())


class FakeVerifier:
    def verify(self, authorization):
        if authorization != AUTH["Authorization"]:
            raise RequestTokenError("not from the core")
        scopes = ("views:read", "actions:write")
        return RequestContext("1", "Ada", "ada@example.com", "default", "member", scopes, {})


class FakeStorage:
    def __init__(self):
        self.docs = []

    def iterate(self, collection, *, tenant, sort=None, **params):
        yield from sorted(self.docs, key=lambda d: d["data"]["text"])

    def create(self, collection, data, *, tenant):
        if not data.get("text"):
            error = {"pointer": "/text", "keyword": "minLength", "message": "is too short"}
            raise StorageError(422, {"errors": [error]})
        doc = {"id": str(len(self.docs) + 1), "version": 1, "data": data}
        self.docs.append(doc)
        return doc


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setattr(plugin, "verifier", FakeVerifier())
    monkeypatch.setattr(plugin, "storage", FakeStorage())
    return plugin.app.test_client()


def test_health_answers_200(client):
    assert client.get("/health").status_code == 200


def test_a_request_without_the_core_s_token_is_refused(client):
    assert client.get("/items").status_code == 401
    assert client.post("/items", data={"text": "x"}).status_code == 401


def test_an_item_added_through_the_form_is_listed_escaped(client):
    response = client.post("/items", data={"text": "<b>milk</b>"}, headers=AUTH)
    assert (response.status_code, response.headers["Location"]) == (303, "/items")
    page = client.get("/items", headers=AUTH).get_data(as_text=True)
    assert "&lt;b&gt;milk&lt;/b&gt;" in page and "<b>milk" not in page


def test_an_invalid_item_shows_what_to_fix(client):
    response = client.post("/items", data={"text": " "}, headers=AUTH)
    assert response.status_code == 422 and "/text" in response.get_data(as_text=True)


def test_the_manifest_declares_the_routes_served():
    assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", MANIFEST["plugin_id"])
    menu = MANIFEST["menu_items"][0]
    assert (menu["view"]["method"], menu["view"]["path"]) == ("GET", "/items")
    assert [(a["method"], a["path"]) for a in menu["actions"]] == [("POST", "/items")]
