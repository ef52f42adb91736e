"""`flask --app app plugins new NAME --lang python|node [--dir D]` (extframework/scaffold.py):
the plugins it writes pass their own tests, register with an enrolment key, show their menus in
the shell and store what their form posts; bad ids and non-empty folders are refused."""

import os
import re
import subprocess
import sys

import pytest

from extframework import scaffold
from tests.support.processes import ROOT, Process, free_port, login_session
from tests.support.shell_fixtures import PASSWORD, Demo

PLACEHOLDER = re.compile(r"__(PLUGIN_ID|PLUGIN_NAME|SDK_PYTHON|SDK_NODE)__")


@pytest.mark.parametrize(
    ("lang", "files"),
    [
        ("python", {"README.md", "manifest.json", "plugin.py", "test_plugin.py"}),
        (
            "node",
            {
                "README.md",
                "manifest.json",
                "package.json",
                "plugin.mjs",
                "plugin.test.mjs",
                "server.mjs",
            },
        ),
    ],
)
def test_new_writes_the_template_with_the_placeholders_replaced(runner, tmp_path, lang, files):
    target = tmp_path / "acme-notes"
    result = runner.invoke(
        args=["plugins", "new", "acme-notes", "--lang", lang, "--dir", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in target.iterdir()} == files
    for path in target.iterdir():
        assert not PLACEHOLDER.search(path.read_text()), path
    manifest = (target / "manifest.json").read_text()
    assert '"plugin_id": "acme-notes"' in manifest and '"label": "Acme Notes"' in manifest


def test_an_existing_empty_folder_is_used(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    args = ["plugins", "new", "notes", "--lang", "node", "--dir", str(tmp_path / "empty")]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "empty" / "server.mjs").exists()


@pytest.mark.parametrize("occupied", ["folder", "file"])
def test_a_non_empty_folder_or_a_file_is_refused_and_left_alone(runner, tmp_path, occupied):
    target = tmp_path / "acme-notes"
    if occupied == "folder":
        target.mkdir()
        (target / "mine.txt").write_text("keep me")
    else:
        target.write_text("keep me")
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(
        args=["plugins", "new", "acme-notes", "--lang", "python", "--dir", str(target)]
    )
    assert result.exit_code != 0
    assert "exists and is not empty" in result.output and "--dir" in result.output
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "plugin_id",
    # "acme\n": the meta-schema's '$' matches before a final newline under re.search
    ["Acme", "acme_notes", "acme--notes", "-acme", "9acme", "a" * 65, "acme\n", "../acme"],
)
def test_an_invalid_plugin_id_is_refused_with_the_rule(runner, tmp_path, plugin_id):
    result = runner.invoke(
        args=["plugins", "new", "--lang", "python", "--dir", str(tmp_path / "p"), "--", plugin_id]
    )
    assert result.exit_code != 0
    assert "is not a valid plugin_id" in result.output and "acme-notes" in result.output
    assert not (tmp_path / "p").exists()


def test_an_unknown_language_or_a_hostile_display_name_is_refused(runner, tmp_path):
    result = runner.invoke(
        args=["plugins", "new", "notes", "--lang", "go", "--dir", str(tmp_path / "p")]
    )
    assert result.exit_code != 0 and "'go' is not one of" in result.output
    result = runner.invoke(
        args=[
            "plugins",
            "new",
            "notes",
            "--lang",
            "node",
            "--name",
            "x'</h1>",
            "--dir",
            str(tmp_path / "p"),
        ]
    )
    assert result.exit_code != 0 and "cannot be the display name" in result.output
    assert not (tmp_path / "p").exists()


# --- end to end: the author's own tests, then a real core -------------------------------------


def npm_install(plugin_dir) -> None:
    """As the README says: `npm install` links the SDK (no registry package is needed)."""
    result = subprocess.run(
        ["npm", "install", "--offline", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=plugin_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    link = plugin_dir / "node_modules" / "@extframework" / "sdk"
    assert link.resolve() == (ROOT / "sdk-node").resolve()


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    base = tmp_path_factory.mktemp("scaffolded")
    plugins = {}
    for plugin_id, lang in (("py-notes", "python"), ("node-notes", "node")):
        scaffold.new_plugin(plugin_id, lang, base / plugin_id)
        plugins[plugin_id] = base / plugin_id
    npm_install(plugins["node-notes"])
    return plugins


def test_the_scaffolded_plugins_pass_their_own_tests(scaffolded):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sdk")}
    python = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plugin.py"],
        cwd=scaffolded["py-notes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert python.returncode == 0 and "5 passed" in python.stdout, python.stdout + python.stderr
    node = subprocess.run(
        ["node", "--test", "plugin.test.mjs"],
        cwd=scaffolded["node-notes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert node.returncode == 0 and "# pass 5" in node.stdout, node.stdout + node.stderr


def test_the_scaffolded_plugins_register_show_their_menus_and_store(tmp_path, scaffolded):
    demo = Demo(tmp_path)
    try:
        demo.add_user("member@example.com", role="member")
        for plugin_id, folder in scaffolded.items():
            port = free_port()
            command = (
                [sys.executable, "plugin.py"] if plugin_id == "py-notes" else ["node", "server.mjs"]
            )
            demo.plugins[plugin_id] = Process(
                command,
                port,
                "/health",
                env={**demo.plugin_env(plugin_id), "PORT": str(port)},
                cwd=folder,
                log_path=tmp_path / f"{plugin_id}.log",
            )
        for plugin_id in scaffolded:
            demo.wait_for_state(plugin_id, "active")
        session = login_session(demo.url, "member@example.com", PASSWORD)
        shell = session.get(demo.url + "/", timeout=10).text
        for plugin_id, label in (("py-notes", "Py Notes"), ("node-notes", "Node Notes")):
            assert f'href="/plugin-proxy/{plugin_id}/items"' in shell and label in shell
            view = session.get(f"{demo.url}/plugin-proxy/{plugin_id}/items", timeout=10)
            assert view.status_code == 200 and "Nothing yet." in view.text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', view.text).group(1)
            posted = session.post(
                f"{demo.url}/plugin-proxy/{plugin_id}/items",
                data={"text": f"from {plugin_id}", "csrf_token": csrf},
                timeout=10,
            )
            assert posted.status_code == 200 and f"<li>from {plugin_id}</li>" in posted.text
    finally:
        demo.stop()
