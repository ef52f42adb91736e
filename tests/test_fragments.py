"""Fragment processing: sanitizing, URL rewriting, CSRF and _method injection."""

import re

import pytest

from extframework.services import fragments

BASE = "http://127.0.0.1:9001/plugin"


def process(html: str, current_path: str = "/notes") -> str:
    return fragments.process(
        html, plugin_id="demo", current_path=current_path, base_url=BASE, csrf_token="TOKEN"
    )


@pytest.mark.parametrize(
    "payload",
    [
        "<script>window.pwned=1</script>",
        "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
        '<img src="x" onerror="window.pwned=1">',
        "<svg onload=window.pwned=1><circle r=1></circle></svg>",
        '<a href="javascript:window.pwned=1">x</a>',
        '<a href=" JaVaScRiPt:window.pwned=1">x</a>',
        '<a href="jav&#x09;ascript:window.pwned=1">x</a>',
        '<a href="data:text/html,<script>window.pwned=1</script>">x</a>',
        '<iframe srcdoc="<script>window.pwned=1</script>"></iframe>',
        '<object data="javascript:window.pwned=1"></object><embed src="x.swf">',
        "<style>body{background:url(javascript:window.pwned=1)}</style>",
        '<p style="background:url(javascript:window.pwned=1)">x</p>',
        '<form action="javascript:window.pwned=1"><button>go</button></form>',
        '<form><button formaction="javascript:window.pwned=1">go</button></form>',
        '<meta http-equiv="refresh" content="0;url=javascript:window.pwned=1">',
        '<base href="javascript:window.pwned=1//">',
        '<div onclick="window.pwned=1" onmouseover="window.pwned=1">x</div>',
        '<details open ontoggle="window.pwned=1">x</details>',
        "<math><mtext><table><mglyph><style><img src=x onerror=window.pwned=1>",
        '<noscript><p title="</noscript><img src=x onerror=window.pwned=1>"></noscript>',
    ],
)
def test_no_script_survives(payload):
    out = process(payload).lower()
    for bad in (
        "<script",
        "onerror",
        "onload",
        "onclick",
        "ontoggle",
        "javascript:",
        "<iframe",
        "<object",
        "<embed",
        "<style",
        "style=",
        "<meta",
        "<base",
        "formaction",
        "data:",
    ):
        assert bad not in out, (bad, out)


def test_text_that_looks_like_markup_stays_text():
    out = process("<p>&lt;script&gt;alert(1)&lt;/script&gt; a &amp; b</p>")
    assert out == "<p>&lt;script&gt;alert(1)&lt;/script&gt; a &amp; b</p>"


@pytest.mark.parametrize(
    ("href", "current", "expected"),
    [
        ("/notes/3", "/notes", "/plugin-proxy/demo/notes/3"),
        ("notes/3", "/", "/plugin-proxy/demo/notes/3"),
        ("3", "/notes/", "/plugin-proxy/demo/notes/3"),
        ("?page=2", "/notes", "/plugin-proxy/demo/notes?page=2"),
        ("../../../../etc/passwd", "/notes/1", "/plugin-proxy/demo/etc/passwd"),
        ("/a/../../b", "/", "/plugin-proxy/demo/b"),
        (BASE + "/notes/7?x=1", "/", "/plugin-proxy/demo/notes/7?x=1"),
        (BASE, "/notes", "/plugin-proxy/demo/"),
        ("https://example.org/help", "/", "https://example.org/help"),
        ("http://127.0.0.1:9001/pluginother", "/", "http://127.0.0.1:9001/pluginother"),
        ("#top", "/", "#pv-top"),
        ("/notes#top", "/", "/plugin-proxy/demo/notes#pv-top"),
    ],
)
def test_links_are_rewritten_to_proxy_routes(href, current, expected):
    out = process(f'<a href="{href}">x</a>', current_path=current)
    assert re.search(r'href="([^"]*)"', out).group(1).replace("&amp;", "&") == expected


def test_image_sources_and_form_actions_are_rewritten():
    out = process('<img src="/logo.png" alt="l"><form method="post" action="notes"></form>')
    assert 'src="/plugin-proxy/demo/logo.png"' in out
    assert 'action="/plugin-proxy/demo/notes"' in out


def test_post_forms_get_the_csrf_token_and_get_forms_do_not():
    out = process(
        '<form method="POST" action="/notes"><input name="t"></form>'
        '<form action="/notes"><input name="q"></form>'
    )
    post, get = out.split("</form>")[:2]
    assert '<input type="hidden" name="csrf_token" value="TOKEN">' in post
    assert 'method="post"' in post
    assert "csrf_token" not in get and 'method="get"' in get


def test_a_plugin_cannot_supply_its_own_csrf_token():
    out = process('<form method="post"><input type="hidden" name="csrf_token" value="evil"></form>')
    assert out.count('name="csrf_token"') == 1
    assert '<input type="hidden" name="csrf_token" value="TOKEN">' in out
    assert '<input type="hidden" value="evil">' in out  # nameless: the browser never sends it


@pytest.mark.parametrize("method", ["put", "PATCH", "delete"])
def test_mutating_methods_become_a_post_with_method_field(method):
    out = process(f'<form method="{method}" action="/notes/3"><button>Go</button></form>')
    assert 'method="post"' in out
    assert f'<input type="hidden" name="_method" value="{method.upper()}">' in out
    assert 'name="csrf_token" value="TOKEN"' in out


def test_form_without_action_submits_to_the_current_proxied_path():
    out = process('<form method="post"><button>Save</button></form>', current_path="/notes/4")
    assert 'action="/plugin-proxy/demo/notes/4"' in out


def test_ids_and_their_references_are_prefixed():
    out = process('<label for="title">T</label><input id="title" aria-describedby="h1 h2">')
    assert 'for="pv-title"' in out and 'id="pv-title"' in out
    assert 'aria-describedby="pv-h1 pv-h2"' in out


def test_attribute_values_are_reescaped():
    out = process('<input name="t" value="a&quot;&gt;&lt;script&gt;x">')
    assert 'value="a&quot;&gt;&lt;script&gt;x"' in out
    assert "<script" not in out


# --- browser-style URL reading (issue 11): nothing rewritten may leave the plugin's prefix ----

CORE = "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("/%2e%2e/%2e%2e/console", "/plugin-proxy/demo/console"),
        ("/%2E%2E/%2E%2E/console/users", "/plugin-proxy/demo/console/users"),
        ("/.%2e/.%2E/console", "/plugin-proxy/demo/console"),
        ("%2e%2e/%2e%2e/%2e%2e/console", "/plugin-proxy/demo/console"),
        ("/%2e/notes", "/plugin-proxy/demo/notes"),
        ("\\..\\..\\console", "/plugin-proxy/demo/console"),
        ("/notes\\..\\..\\console", "/plugin-proxy/demo/console"),
        ("/no\ttes/../../con\nsole", "/plugin-proxy/demo/console"),
        (" \x01/notes/%2e%2e/x\x1f ", "/plugin-proxy/demo/x"),
        ("ht\ttp://127.0.0.1:9001/plugin/notes", "/plugin-proxy/demo/notes"),
        ("http:\\\\127.0.0.1:9001\\plugin\\..\\plugin\\notes", "/plugin-proxy/demo/notes"),
        ("/../plugin-proxy/other/items", "/plugin-proxy/demo/plugin-proxy/other/items"),
        ("/plugin-proxy/other/items", "/plugin-proxy/demo/plugin-proxy/other/items"),
        ("/.//evil.example/x", "/plugin-proxy/demo//evil.example/x"),
        # These leave the plugin: they stay what the browser reads, never a path on the core.
        ("//evil.example/x", "https://evil.example/x"),
        ("/\t/evil.example/x", "https://evil.example/x"),
        ("/\\evil.example/x", "https://evil.example/x"),
        ("\\\\evil.example/x", "https://evil.example/x"),
        (CORE + "/console/users", CORE + "/console/users"),
        ("http://127.0.0.1:9001/plugin/../console", "http://127.0.0.1:9001/console"),
    ],
)
def test_links_are_read_the_way_browsers_read_them(href, expected):
    out = process(f'<a href="{href}">x</a>', current_path="/notes/1")
    assert re.search(r'href="([^"]*)"', out).group(1).replace("&amp;", "&") == expected


def test_image_sources_cannot_climb_out_of_the_prefix():
    out = process('<img src="/%2e%2e/%2e%2e/console/users" alt="x">')
    assert 'src="/plugin-proxy/demo/console/users"' in out


def form_of(out: str) -> str:
    return out.split("</form>")[0] if "<form" in out else out


@pytest.mark.parametrize(
    "action",
    [
        CORE + "/console/users",
        CORE + "/plugin-proxy/other/items",
        CORE + "/plugin-proxy/demo/notes",  # the core's own URL: plugins write plugin paths
        "https://evil.example/collect",
        "//evil.example/collect",
        "/\t/evil.example/collect",
        "/\\evil.example/collect",
        "\\\\evil.example/collect",
        "mailto:someone@example.org",
    ],
)
@pytest.mark.parametrize("method", ["post", "delete", "get"])
def test_forms_aimed_outside_the_plugin_are_inert_and_carry_no_token(action, method):
    out = process(
        f'<form method="{method}" action="{action}" class="f">'
        '<input name="email" value="evil@example.org"><button>Create</button></form>'
    )
    assert "<form" not in out and "</form>" not in out
    assert "TOKEN" not in out and "csrf_token" not in out and "_method" not in out
    assert '<div data-refused-action="' in out and 'class="f"' in out
    assert "<button>Create</button></div>" in out  # the content stays, for the person to see


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("/%2e%2e/%2e%2e/console/users", "/plugin-proxy/demo/console/users"),
        ("/%2E%2E/plugin-proxy/other/items", "/plugin-proxy/demo/plugin-proxy/other/items"),
        (BASE + "/notes", "/plugin-proxy/demo/notes"),
        ("notes/%2e%2e/notes", "/plugin-proxy/demo/notes"),
        ("", "/plugin-proxy/demo/notes"),
    ],
)
def test_forms_into_the_plugin_keep_the_token_after_normalisation(action, expected):
    out = process(f'<form method="post" action="{action}"><button>Go</button></form>')
    assert f'<form action="{expected}" method="post">' in out
    assert '<input type="hidden" name="csrf_token" value="TOKEN">' in out


def test_a_refused_form_beside_a_legit_one_leaves_the_legit_one_working(caplog):
    out = process(
        f'<form method="post" action="{CORE}/console/users"><button>Evil</button></form>'
        '<form method="post" action="/notes"><button>Good</button></form>'
        f'<form action="https://evil.example/"><button>Other</button></form>'
    )
    assert out.count("<form") == 1 and out.count("</form>") == 1
    assert out.count("<div data-refused-action=") == 2 and out.count("</div>") == 2
    good = out[out.index("<form") : out.index("</form>")]
    assert 'action="/plugin-proxy/demo/notes"' in good and 'value="TOKEN"' in good
    assert out.count("TOKEN") == 1
    refusals = [r.getMessage() for r in caplog.records if "refused a form" in r.getMessage()]
    assert len(refusals) == 2 and all("plugin demo" in r for r in refusals)
    assert CORE + "/console/users" in refusals[0]


def test_a_plugin_cannot_mark_its_own_markup_as_refused():
    out = process('<p data-refused-action="/x" data-note="kept">x</p>')
    assert "data-refused-action" not in out and 'data-note="kept"' in out


def test_framed_views_keep_forms_under_their_own_prefix():
    out = fragments.process(
        '<form method="post" action="/notes"></form><form method="post" action="/%2e%2e/x"></form>',
        plugin_id="demo",
        current_path="/",
        base_url=BASE,
        csrf_token="TOKEN",
        prefix="/plugin-frame/demo",
    )
    assert out.count('name="csrf_token"') == 2
    assert 'action="/plugin-frame/demo/notes"' in out and 'action="/plugin-frame/demo/x"' in out
