"""Storage queries: typed filters, operators, sort, limits, signed keyset cursors, index use."""

import base64
import json

import pytest

from extframework.db import database
from extframework.models import Plugin
from extframework.services import indexes, storage

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

PROBLEM = "application/problem+json"

DOCS = [
    {"title": "a", "count": 3, "price": 1.5, "done": True, "customer_id": "c1",
     "status": "open", "meta": {"owner": "ann", "score": 10}},
    {"title": "b", "count": 10, "price": 2.0, "done": False, "customer_id": "c2",
     "status": "closed", "note": None, "meta": {"owner": "bob", "score": 2.5}},
    {"title": "c", "count": 2, "done": True, "customer_id": "c1", "note": "hi",
     "meta": {"owner": "ann"}},
    {"title": "d", "customer_id": "c3", "tags": ["x"]},
]  # fmt: skip


@pytest.fixture
def api(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin("acme-notes")
    api = plugin_api(token)
    for doc in DOCS:
        assert api.create("notes", doc).status_code == 201
    return api


def titles(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [d["data"]["title"] for d in response.get_json()["items"]]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, ["a", "b", "c", "d"]),
        ({"count": "3"}, ["a"]),  # typed: the integer 3, not the string "3"
        ({"count": "10"}, ["b"]),
        ({"price": "2"}, ["b"]),  # a number compares numerically with 2.0
        ({"done": "true"}, ["a", "c"]),
        ({"done": "false"}, ["b"]),
        ({"customer_id": "c1"}, ["a", "c"]),
        ({"meta.owner": "ann"}, ["a", "c"]),
        ({"meta.score": "2.5"}, ["b"]),
        ({"status": "open"}, ["a"]),
        ({"note": "null"}, ["b"]),  # explicitly null, not missing
        ({"count__gt": "2"}, ["a", "b"]),  # 10 > 2 numerically, not as text
        ({"count__gte": "3"}, ["a", "b"]),
        ({"count__lt": "10"}, ["a", "c"]),
        ({"count__lte": "10", "done": "true"}, ["a", "c"]),
        ({"customer_id__ne": "c1"}, ["b", "d"]),
        ({"count__ne": "3"}, ["b", "c", "d"]),  # a missing field is "not equal"
        ({"customer_id__in": "c2,c3"}, ["b", "d"]),
        ({"customer_id__in": '["c3", "c1"]'}, ["a", "c", "d"]),
        ({"count__in": "2,10"}, ["b", "c"]),
        ({"note__exists": "true"}, ["b", "c"]),
        ({"meta__exists": "false"}, ["d"]),
        ({"meta.score__exists": "true", "meta.owner": "ann"}, ["a"]),
        ({"sort": "-count"}, ["b", "a", "c", "d"]),  # missing sorts last descending
        ({"sort": "count"}, ["d", "c", "a", "b"]),
        ({"sort": "customer_id,-title"}, ["c", "a", "b", "d"]),
        ({"sort": "meta.owner,-meta.score"}, ["d", "a", "c", "b"]),
    ],
)
def test_filters_and_sort(api, params, expected):
    assert titles(api.query("notes", params)) == expected


@pytest.mark.parametrize(
    "params, named",
    [
        ({"colour": "red"}, "colour"),
        ({"meta.colour": "red"}, "meta.colour"),
        ({"title.x": "a"}, "title.x"),
        ({"count__like": "3"}, "like"),
        ({"count__between": "1,2"}, "between"),
        ({"sort": "colour"}, "colour"),
        ({"sort": "count,count"}, "count"),
        ({"count": "three"}, "integer"),
        ({"count": "3.5"}, "integer"),
        ({"done": "yes"}, "boolean"),
        ({"note__exists": "maybe"}, "true or false"),
        ({"count__gt": "null"}, "integer"),
        ({"meta": "x"}, "meta"),
        ({"tags": "x"}, "tags"),
        ({"limit": "1001"}, "1000"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"customer_id__in": ",".join(["x"] * 101)}, "100"),
        ({"title": "$'; DROP TABLE document; --"}, None),
    ],
)
def test_bad_queries_get_400_naming_the_culprit(api, params, named):
    response = api.query("notes", params)
    if named is None:  # a hostile value is just a value
        assert response.status_code == 200 and response.get_json()["items"] == []
        return
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert named in response.get_json()["detail"]


def test_repeated_parameter_is_400(client, api):
    response = client.get("/api/storage/notes?count=1&count=2", headers=api.headers())
    assert response.status_code == 400
    assert "count" in response.get_json()["detail"]


def test_limit_defaults_to_50_and_allows_1000(api):
    for i in range(60):
        api.create("notes", {"title": f"t{i:02d}"})
    page = api.query("notes").get_json()
    assert len(page["items"]) == 50 and page["next_cursor"]
    page = api.query("notes", {"limit": "1000"}).get_json()
    assert len(page["items"]) == 64 and page["next_cursor"] is None


@pytest.mark.parametrize("sort", [None, "count", "-count", "customer_id,-meta.score", "-done"])
def test_cursor_pages_through_everything_once_despite_concurrent_inserts(api, sort):
    for i in range(25):
        api.create(
            "notes",
            {"title": f"t{i}", "count": i % 4, "customer_id": f"c{i % 3}", "done": i % 2 == 0},
        )
    params = {"limit": "4"} | ({"sort": sort} if sort else {})
    seen, before = [], {d["id"] for d in api.query("notes", {"limit": "1000"}).get_json()["items"]}
    cursor, inserted = None, 0
    while True:
        response = api.query("notes", params | ({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        seen += [d["id"] for d in page["items"]]
        if inserted < 5:  # new documents arrive while the client pages
            api.create("notes", {"title": f"late{inserted}", "count": 1, "customer_id": "c0"})
            inserted += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a document appeared twice"
    assert before <= set(seen), "a document present from the start was skipped"


def test_cursor_order_matches_a_single_big_page(api):
    for i in range(30):
        api.create("notes", {"title": f"t{i}", "count": i % 5})
    full = [
        d["id"] for d in api.query("notes", {"sort": "-count", "limit": "1000"}).get_json()["items"]
    ]
    paged, cursor = [], None
    while True:
        params = {"sort": "-count", "limit": "7"} | ({"cursor": cursor} if cursor else {})
        page = api.query("notes", params).get_json()
        paged += [d["id"] for d in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert paged == full


def test_tampered_or_foreign_cursor_is_400(api, make_storage_plugin, plugin_api):
    cursor = api.query("notes", {"limit": "1"}).get_json()["next_cursor"]
    body, _, signature = cursor.partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["p"] = 0
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    edited = cursor[:-2] + ("BB" if cursor.endswith("AA") else "AA")  # 1 in 256 ends in AA
    for bad in (f"{forged_body}.{signature}", edited, "garbage"):
        response = api.query("notes", {"limit": "1", "cursor": bad})
        assert response.status_code == 400, bad
        assert "cursor" in response.get_json()["detail"]
    other = api.query("notes", {"limit": "1", "count__gt": "0", "cursor": cursor})
    assert other.status_code == 400
    assert "different query" in other.get_json()["detail"]
    # the same cursor under another plugin's token (same collection name) is refused too
    _, token = make_storage_plugin("other-plugin")
    response = plugin_api(token).query("notes", {"limit": "1", "cursor": cursor})
    assert response.status_code == 400


def test_indexed_equality_query_uses_the_collections_partial_index(app, api, engine):
    if engine == "postgresql":
        return _postgres_uses_the_partial_index(app)
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "acme-notes")
        ns = storage.open_collection(plugin, None, "notes", write=False)
        by_customer = indexes.index_name("acme-notes", "notes", ["customer_id"])
        by_owner = indexes.index_name("acme-notes", "notes", ["meta.owner", "count"])
        cases = [
            ([("customer_id", "c1")], by_customer, "<expr>=?"),
            ([("customer_id", "c1"), ("sort", "-meta.score")], by_customer, "<expr>=?"),
            ([("customer_id__in", "c1,c2")], by_customer, "<expr>=?"),
            ([("meta.owner", "ann")], by_owner, "<expr>=?"),
            ([("meta.owner", "ann"), ("count__gt", "1")], by_owner, "<expr>=? AND <expr>>?"),
        ]
        for args, index, term in cases:
            plan = " | ".join(storage.explain(ns, args))
            assert f"USING INDEX {index} (tenant=? AND {term}" in plan, (args, plan)
            assert "SCAN" not in plan, plan
        # a filter on an unindexed field still stays inside the namespace's own rows, in key
        # order (the namespace index, schema step 6)
        plan = " | ".join(storage.explain(ns, [("title", "a")]))
        assert "INDEX document_plugin_id_tenant_collection (plugin_id=? AND tenant=? AND " in plan
        assert "collection=?)" in plan and "TEMP B-TREE" not in plan, plan
        # the partial index's literal WHERE terms are what make it usable
        row = database.execute_sql(
            "SELECT sql FROM sqlite_master WHERE name = ?", [by_customer]
        ).fetchone()
        assert indexes.scope_clause("acme-notes", "notes") in row[0]


def _postgres_uses_the_partial_index(app):
    """The query repeats the index's expressions, so PostgreSQL can seek on them.

    Four documents are too few for the planner to prefer an index by cost; with sequential
    scans priced out, a plan without the index would still be a Seq Scan.
    """
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "acme-notes")
        ns = storage.open_collection(plugin, None, "notes", write=False)
        by_customer = indexes.index_name("acme-notes", "notes", ["customer_id"])
        by_owner = indexes.index_name("acme-notes", "notes", ["meta.owner", "count"])
        cases = [
            ([("customer_id", "c1")], by_customer, "{customer_id}"),
            ([("customer_id", "c1"), ("sort", "-meta.score")], by_customer, "{customer_id}"),
            ([("customer_id__in", "c1,c2")], by_customer, "{customer_id}"),
            ([("meta.owner", "ann")], by_owner, "{meta,owner}"),
            ([("meta.owner", "ann"), ("count__gt", "1")], by_owner, "{count}"),
        ]
        database.execute_sql("SET enable_seqscan = off")
        try:
            for args, index, term in cases:
                plan = " | ".join(storage.explain(ns, args))
                assert f"USING INDEX {index} (" in plan, (args, plan)
                assert term in plan.split(f"USING INDEX {index} (", 1)[1], (args, plan)
                assert "Seq Scan" not in plan, plan
            # an unindexed filter still reads only the namespace's rows, through an index
            plan = " | ".join(storage.explain(ns, [("title", "a")]))
            assert "Index Scan" in plan and "tenant" in plan and "Seq Scan" not in plan, plan
        finally:
            database.execute_sql("RESET enable_seqscan")
        row = database.execute_sql(
            "SELECT indexdef FROM pg_indexes WHERE indexname = ?", [by_customer]
        ).fetchone()
        assert "'acme-notes'" in row[0] and "'notes'" in row[0], row[0]


# Byte order (UTF-8, so code point order): capitals before small letters, accents after ASCII.
MIXED_TITLES = ["b", "é", "B", "a", "Z", "e", "ab", "A"]
BYTE_ORDER = sorted(MIXED_TITLES, key=lambda t: t.encode())


def test_strings_sort_and_compare_in_byte_order_whatever_the_collation(
    make_storage_plugin, plugin_api
):
    """The test cluster's collation is ICU English ("a" < "B"); storage must not follow it."""
    _, token = make_storage_plugin("acme-notes")
    api = plugin_api(token)
    for title in MIXED_TITLES:
        assert api.create("notes", {"title": title, "customer_id": title}).status_code == 201
    assert titles(api.query("notes", {"sort": "title"})) == BYTE_ORDER
    assert titles(api.query("notes", {"sort": "-title"})) == BYTE_ORDER[::-1]
    # the indexed field pages by cursor in the same order
    paged, cursor = [], None
    while True:
        params = {"sort": "customer_id", "limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = api.query("notes", params).get_json()
        paged += [d["data"]["title"] for d in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert paged == BYTE_ORDER
    assert titles(api.query("notes", {"title__gt": "Z", "sort": "title"})) == [
        t for t in BYTE_ORDER if t.encode() > b"Z"
    ]
    assert titles(api.query("notes", {"customer_id__lt": "a", "sort": "title"})) == ["A", "B", "Z"]


def test_missing_and_null_sort_first_ascending_and_last_descending(make_storage_plugin, plugin_api):
    """As SQLite sorts: a missing field and a JSON null tie (then pk order) below any value."""
    _, token = make_storage_plugin("acme-notes")
    api = plugin_api(token)
    for title, note in [("a", "x"), ("b", None), ("c", ...), ("d", "w")]:
        api.create("notes", {"title": title} | ({} if note is ... else {"note": note}))
    assert titles(api.query("notes", {"sort": "note"})) == ["b", "c", "d", "a"]
    assert titles(api.query("notes", {"sort": "-note"})) == ["a", "d", "b", "c"]
    first = api.query("notes", {"sort": "-note", "limit": "3"}).get_json()
    rest = api.query("notes", {"sort": "-note", "cursor": first["next_cursor"]})
    assert titles(rest) == ["c"]
