"""Issue 16: the plugin guide cannot drift from the code it describes.

docs/plugin-guide.md states problem types, limits, the request JWT's claims and their types, the
asserted formats and the migration context; each test reads the guide's table or list and the
code's own values and compares them. The lost-token recovery the guide documents is run.
"""

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

from extframework import settings
from extframework.problems import PROBLEM_KINDS
from extframework.services import migrations, tokens
from extframework.services.schema_validation import FORMAT_CHECKER

GUIDE = (Path(__file__).resolve().parent.parent / "docs/plugin-guide.md").read_text()


def section(title: str) -> str:
    """The text of the guide's ``## title`` (or ``### title``) section, up to the next heading."""
    match = re.search(rf"^(#+) {re.escape(title)}\n(.*?)(?=^#{{1,3}} |\Z)", GUIDE, re.M | re.S)
    assert match, f"the guide has no section {title!r}"
    return match.group(2)


def table_rows(text: str) -> list[list[str]]:
    """The cells of each body row of the markdown tables in ``text``."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"\|\s*-", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:] if rows else rows


def code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    return match.group(1) if match else ""


def test_every_problem_type_is_listed_with_its_status():
    listed = {code(row[0]): int(row[1]) for row in table_rows(section("Errors")) if code(row[0])}
    assert listed == {slug: kind.status for slug, kind in PROBLEM_KINDS.items()}


def test_the_wrong_409_sentence_is_gone():
    assert "just means nothing changed" not in GUIDE
    assert "only one of them can mean" in section("Errors")


def human(name: str, value: float) -> str:
    """A limit as the guide writes it: sizes in KiB/MiB, seconds, milliseconds, counts."""
    if "BYTES" in name:
        for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= size and value % size == 0:
                return f"{value // size:g} {unit}"
        return f"{value:,} bytes"
    if name.endswith("_MS"):
        return f"{value:,g} ms"
    if name.endswith("_S"):
        return f"{value:,g} s"
    return f"{value:,}"


def source_value(source: str) -> float:
    """A setting's default, or ``module.CONSTANT`` of extframework (services first)."""
    if source in settings.DEFAULTS:
        return settings.DEFAULTS[source]
    module, _, name = source.rpartition(".")
    for package in ("extframework.services", "extframework"):
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"the guide names {source!r}, which is neither a setting nor a constant")


def test_the_limits_table_states_the_codes_defaults():
    rows = table_rows(section("Limits"))
    assert len(rows) >= 20
    for what, stated, source in rows:
        name = code(source)
        assert stated == human(name, source_value(name)), f"{what}: {source}"


def test_other_sections_state_the_same_numbers_as_the_limits_table():
    assert "every 10 s (`HEALTH_INTERVAL_S`)" in GUIDE
    assert "within 2 s (`HEALTH_TIMEOUT_S`)" in GUIDE
    assert "within 5 s (`PROXY_TIMEOUT_S`)" in GUIDE
    assert "`iat` + 60 (`REQUEST_JWT_TTL_S`)" in GUIDE
    assert settings.DEFAULTS["HEALTH_INTERVAL_S"] == 10
    assert settings.DEFAULTS["HEALTH_TIMEOUT_S"] == 2
    assert settings.DEFAULTS["PROXY_TIMEOUT_S"] == 5
    assert settings.DEFAULTS["REQUEST_JWT_TTL_S"] == 60
    assert settings.DEFAULTS["KEY_PUBLISH_DELAY_S"] == 90 and settings.JWKS_MAX_AGE_S == 60


JSON_TYPES = {str: "string", int: "integer", list: "array of strings"}


@pytest.mark.parametrize("kind", ["person", "migration"])
def test_the_request_jwt_claims_and_their_types_are_those_the_core_mints(kind):
    caller = (
        {"user_id": "7", "name": "Ada", "email": "ada@example.com", "tenant": "default"}
        if kind == "person"
        else {
            "user_id": migrations.HANDLER_SUBJECT,
            "name": migrations.HANDLER_NAME,
            "email": "",
            "tenant": migrations.HANDLER_TENANT,
        }
    )
    claims = tokens.request_claims(
        issuer="https://core.example",
        plugin_id="notebook",
        role="member",
        scopes=tokens.SCOPES_BY_ROLE["member"],
        ttl_s=60,
        **caller,
    )
    documented = {code(row[0]): row[1] for row in table_rows(section("The request JWT"))}
    minted = {name: JSON_TYPES[type(value)] for name, value in claims.items()}
    assert documented == minted
    assert all(isinstance(scope, str) for scope in claims["scopes"])


def test_the_scopes_the_guide_names_are_those_of_each_role():
    row = next(r for r in table_rows(section("The request JWT")) if code(r[0]) == "scopes")
    assert tokens.SCOPES_BY_ROLE == {
        "viewer": ["views:read"],
        "member": ["views:read", "actions:write"],
        "admin": ["views:read", "actions:write", "admin"],
    }
    assert '`["views:read"]`' in row[2] and '`["migrate"]`' in row[2]
    assert migrations.HANDLER_SCOPES == ["migrate"]


def test_the_asserted_formats_are_listed():
    paragraph = re.search(r"only these:\n\n(.*?)\n\n", section("`format` support"), re.S)[1]
    listed = set(re.findall(r"`([a-z0-9-]+)`", paragraph))
    assert listed == set(FORMAT_CHECKER.checkers)


def test_the_migration_context_example_has_the_members_the_core_sends():
    example = re.search(r"```json\n(.*?)```", section("Migrations"), re.S).group(1)
    sent = set(re.findall(r'^\s+"(\w+)":', inspect.getsource(migrations.context), re.M))
    assert set(json.loads(example)) == sent


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_guides_own_links_lead_to_its_headings():
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", GUIDE, re.M):
        anchor, n = slug(heading), 0
        while (anchor if n == 0 else f"{anchor}-{n}") in anchors:
            n += 1
        anchors.add(anchor if n == 0 else f"{anchor}-{n}")
    links = set(re.findall(r"\]\(#([^)]+)\)", GUIDE))
    assert links and links <= anchors, links - anchors


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_lost_token_is_replaced_by_the_operators_rotation_as_the_guide_says(
    app, client, make_plugin, enrolment_key
):
    assert "plugins rotate-token ID --revoke-now" in section("Your token: rotation and recovery")
    plugin, lost = make_plugin()
    again = client.post(
        "/api/registry/plugins", json=plugin.manifest, headers=bearer(enrolment_key)
    )
    assert again.status_code == 409
    assert again.get_json()["type"] == "urn:extframework:problem:plugin-id-taken"
    result = app.test_cli_runner().invoke(
        args=["plugins", "rotate-token", "test-plugin", "--revoke-now"]
    )
    assert result.exit_code == 0, result.output
    new = result.output.strip().splitlines()[-1]
    headers = {"X-Tenant-ID": "default"}
    assert client.get("/api/storage/items", headers={**bearer(new), **headers}).status_code == 200
    refused = client.get("/api/storage/items", headers={**bearer(lost), **headers})
    assert refused.status_code == 401


def test_the_sort_order_and_typing_the_guide_states_hold(client, make_plugin):
    text = section("Query semantics")
    assert '`"B" < "Z" < "a" < "b" < "é"`' in text
    assert "first ascending and last descending" in text
    _, token = make_plugin()
    headers = {**bearer(token), "X-Tenant-ID": "default"}
    for title, count in [("b", 2), ("é", 3), ("B", 1), ("a", None), ("Z", 0), ("007", 5)]:
        data = {"title": title} if count is None else {"title": title, "count": count}
        assert client.post("/api/storage/items", json=data, headers=headers).status_code == 201

    def titles(query: str) -> list[str]:
        answer = client.get(f"/api/storage/items?{query}", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        return [item["data"]["title"] for item in answer.get_json()["items"]]

    assert titles("sort=title") == ["007", "B", "Z", "a", "b", "é"]
    assert titles("sort=count")[0] == "a" and titles("sort=-count")[-1] == "a"
    assert titles("count=3") == ["é"]  # typed by the schema: the integer 3
    assert titles("title=007") == ["007"]  # a string field: "007", not the number 7
