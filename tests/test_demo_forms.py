"""The demo plugins' forms, through the shell (issue 17): each storage field error is shown in
plain words next to its field (``aria-invalid``, ``aria-describedby``), and a failed form keeps
what the person typed. Real processes: the core under gunicorn, Notebook and Tasks."""

import html
import re

import pytest

from tests.support.processes import login_session
from tests.support.shell_fixtures import PASSWORD, Demo

JSONSCHEMA_WORDS = ("should be non-empty", "is too long", "''", "/title")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    core = Demo(tmp_path_factory.mktemp("forms"))
    try:
        core.start_python_plugin()
        core.start_node_plugin()
        core.wait_for_state("notebook", "active", timeout_s=60)
        core.wait_for_state("tasks", "active", timeout_s=60)
        core.shell = login_session(core.url, core.admin, PASSWORD)
        yield core
    finally:
        core.stop()


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def submit(demo, path: str, form: dict, page_path: str | None = None):
    page = demo.shell.get(demo.url + (page_path or path), timeout=10).text
    return demo.shell.post(
        demo.url + path, data={**form, "csrf_token": csrf(page)}, allow_redirects=False, timeout=10
    )


def tag(page: str, element: str, field_id: str) -> str:
    return re.search(rf'<{element}[^>]*\bid="{field_id}"[^>]*>', page).group(0)


def assert_tied(page: str, element: str, field_id: str, said: str) -> None:
    """The control is marked invalid and described by a message, just after it, saying ``said``."""
    field = tag(page, element, field_id)
    assert 'aria-invalid="true"' in field, field
    described = re.search(r'aria-describedby="([^"]+)"', field).group(1)
    after = page.split(field, 1)[1]
    message = re.search(rf'<p[^>]*\bid="{described}"[^>]*>([^<]*)</p>', after)
    assert message is not None and html.unescape(message.group(1)) == said
    next_label = after.find("<label")
    assert next_label == -1 or message.start() < next_label  # next to it, not above the form
    shown = html.unescape(page.split("<main", 1)[1])
    for words in JSONSCHEMA_WORDS:
        assert words not in shown, words


def test_notebook_new_note_says_title_is_required_and_keeps_the_body(demo):
    answer = submit(demo, "/plugin-proxy/notebook/notes", {"title": "   ", "body": "kept words"})
    assert answer.status_code == 422
    page = answer.text
    assert_tied(page, "input", "pv-title", "Title is required.")
    assert "kept words</textarea>" in page
    assert "aria-invalid" not in tag(page, "textarea", "pv-body")


def test_notebook_failed_edit_shows_what_was_typed(demo):
    created = submit(demo, "/plugin-proxy/notebook/notes", {"title": "Groceries", "body": "milk"})
    assert created.status_code == 303
    listing = demo.shell.get(demo.url + "/plugin-proxy/notebook/notes", timeout=10).text
    note_id = re.search(r'<tr data-note="([^"]+)">\s*<td>Groceries</td>', listing).group(1)
    path = f"/plugin-proxy/notebook/notes/{note_id}"
    form_page = demo.shell.get(demo.url + path, timeout=10).text
    version = re.search(r'name="version" value="(\d+)"', form_page).group(1)
    too_long = "G" * 201
    answer = submit(
        demo, path, {"_method": "PUT", "version": version, "title": too_long, "body": "eggs too"}
    )
    assert answer.status_code == 422
    page = answer.text
    assert_tied(page, "input", "pv-title", "Title can be at most 200 characters long.")
    assert f'value="{too_long}"' in tag(page, "input", "pv-title")
    assert "eggs too</textarea>" in page
    stored = demo.shell.get(demo.url + path, timeout=10).text
    assert 'value="Groceries"' in tag(stored, "input", "pv-title")  # nothing was saved


def test_notebook_category_name_is_required(demo):
    answer = submit(demo, "/plugin-proxy/notebook/categories", {"name": ""})
    assert answer.status_code == 422
    assert_tied(answer.text, "input", "pv-name", "Name is required.")


@pytest.mark.parametrize(
    ("typed", "said"),
    [("   ", "Task is required."), ("T" * 201, "Task can be at most 200 characters long.")],
)
def test_tasks_new_task_error_is_next_to_the_field_and_keeps_the_text(demo, typed, said):
    answer = submit(demo, "/plugin-proxy/tasks/tasks", {"title": typed})
    assert answer.status_code == 422
    page = answer.text
    assert_tied(page, "input", "pv-task-title", said)
    assert f'value="{typed}"' in tag(page, "input", "pv-task-title")
