"""The shell's own per-view savings (issue 14) keep every answer the same."""

import pytest

from extframework.services import fragments

BASE = "http://127.0.0.1:9001/plugin"
HREFS = [
    "x",
    "/notes/1",
    "?page=2",
    "#top",
    "/%2e%2e/%2e%2e/console",
    "\\..\\..\\console",
    "/no\ttes/../../con\nsole",
    "//evil.example/x",
    "/\\evil.example/x",
    "http://127.0.0.1:9001/plugin/notes",
    "http://127.0.0.1:9001/elsewhere",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("href", HREFS)
@pytest.mark.parametrize("prefix", ["/plugin-proxy/demo", "/plugin-frame/demo"])
@pytest.mark.parametrize("current_path", ["/notes/1", "/other/"])
@pytest.mark.parametrize("base_url", [BASE, "http://127.0.0.1:9002"])
def test_a_remembered_link_maps_as_a_computed_one_in_every_view(
    href, prefix, current_path, base_url
):
    computed = fragments._rewrite(href, prefix, current_path, base_url)
    for _ in range(2):  # the first call remembers, the second answers from memory
        again = fragments.rewrite_url(
            href, prefix=prefix, current_path=current_path, base_url=base_url
        )
        assert again == computed


def test_relative_links_follow_the_path_shown_not_the_first_one_remembered():
    def rewrite(current_path: str) -> str | None:
        return fragments.rewrite_url(
            "x", prefix="/plugin-proxy/demo", current_path=current_path, base_url=BASE
        )

    assert rewrite("/notes/1") == "/plugin-proxy/demo/notes/x"
    assert rewrite("/other/") == "/plugin-proxy/demo/other/x"


def test_a_long_url_is_mapped_but_not_remembered():
    long_url = "/notes/" + "a" * fragments.MAX_REMEMBERED_URL
    before = fragments._remembered_rewrite.cache_info().currsize
    mapped = fragments.rewrite_url(
        long_url, prefix="/plugin-proxy/demo", current_path="/", base_url=BASE
    )
    assert mapped == "/plugin-proxy/demo" + long_url
    assert fragments._remembered_rewrite.cache_info().currsize == before
