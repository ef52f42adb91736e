"""Notebook: a demo extframework plugin in Python (Flask), using extframework_sdk.

It serves HTML fragments for the routes its manifest declares, verifies the request JWT on
every call, keeps all its data in the core's storage API, and enrols itself on start.

Environment: EXTFW_CORE_URL (the core, also the JWT issuer), EXTFW_ENROLMENT_KEY (first
start only), PLUGIN_TOKEN_FILE (where the plugin token is kept), PORT, PLUGIN_HOST.
"""

import logging
import os
import sys
import threading
from collections import Counter

from flask import Flask, abort, g, jsonify, redirect, render_template, request
from werkzeug.serving import make_server

from extframework_sdk import (
    EnrolmentError,
    RequestTokenError,
    RequestVerifier,
    StorageClient,
    StorageError,
    register_or_update,
)

PLUGIN_ID = os.environ.get("PLUGIN_ID", "notebook")
VERSION = "1.0.0"
log = logging.getLogger(PLUGIN_ID)

NOTE_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "body": {"type": "string", "maxLength": 5000},
        "category": {"type": "string", "maxLength": 60},
    },
    "required": ["title"],
    "additionalProperties": False,
}
CATEGORY_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 60}},
    "required": ["name"],
    "additionalProperties": False,
}


LABELS = {"title": "Title", "body": "Body", "category": "Category", "name": "Name"}


def plain_words(error: dict, schema: dict) -> tuple[str, str]:
    """Say one storage field error (``{"pointer", "keyword", "message"}``) as a person would.

    Returns the form field it belongs to ("" when it is about no one field) and the sentence.
    """
    field = error.get("pointer", "").lstrip("/").split("/")[0]
    label = LABELS.get(field, field.capitalize() or "This form")
    rule = schema.get("properties", {}).get(field, {})
    keyword = error.get("keyword")
    if keyword == "required" or (keyword == "minLength" and rule.get("minLength") == 1):
        return field, f"{label} is required."
    if keyword == "minLength":
        return field, f"{label} needs at least {rule['minLength']} characters."
    if keyword == "maxLength":
        return field, f"{label} can be at most {rule['maxLength']} characters long."
    if keyword == "additionalProperties":
        return "", f"This form has a field the notebook does not keep: {label}."
    if field not in LABELS:
        return "", f"{label}: {error.get('message', 'is not valid')}."
    return field, f"{label} is not valid: {error.get('message', '')}."


def manifest(base_url: str) -> dict:
    return {
        "plugin_id": PLUGIN_ID,
        "name": "Notebook",
        "version": VERSION,
        "base_url": base_url,
        "menu_items": [
            {
                "id": "notes",
                "label": "Notes",
                "view": {"method": "GET", "path": "/notes"},
                "actions": [{"id": "create", "method": "POST", "path": "/notes"}],
            },
            {
                "id": "note",
                "label": "Edit note",
                "view": {"method": "GET", "path": "/notes/:id"},
                "actions": [
                    {"id": "update", "method": "PUT", "path": "/notes/:id"},
                    {"id": "delete", "method": "DELETE", "path": "/notes/:id"},
                ],
            },
            {
                "id": "categories",
                "label": "Categories",
                "view": {"method": "GET", "path": "/categories"},
                "actions": [
                    {"id": "create", "method": "POST", "path": "/categories"},
                    {"id": "delete", "method": "DELETE", "path": "/categories/:id"},
                ],
            },
        ],
        "data_schemas": [
            {"collection": "notes", "schema": NOTE_SCHEMA, "indexes": [{"fields": ["category"]}]},
            {"collection": "categories", "schema": CATEGORY_SCHEMA},
        ],
    }


def create_app(core_url: str, token_file: str) -> Flask:
    app = Flask(__name__)
    verifier = RequestVerifier(core_url, PLUGIN_ID)
    storage = StorageClient(core_url, token_file=token_file)  # re-read on 401: rotations
    calls: Counter = Counter()

    @app.before_request
    def verify_request_jwt():
        if request.path in ("/health", "/stats"):
            return None
        try:
            g.caller = verifier.verify(request.headers.get("Authorization"))
        except RequestTokenError as exc:
            log.warning("refused %s %s: %s", request.method, request.path, exc)
            return f"<p>Not from the core: {exc}</p>", 401, {"Content-Type": "text/html"}
        calls[
            f"{request.method} {request.url_rule.rule if request.url_rule else request.path}"
        ] += 1
        return None

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    @app.get("/stats")
    def stats():
        """Count verified calls per route, so tests can tell whether the core called us."""
        return jsonify(dict(calls))

    def tenant() -> str:
        return g.caller.tenant

    def page(template: str, status: int = 200, **context):
        return render_template(template, caller=g.caller, **context), status

    def form_errors(exc: StorageError, schema: dict) -> dict[str, str]:
        """The storage API's field errors in plain words, by form field ("" for the form)."""
        errors: dict[str, str] = {}
        for error in exc.errors:
            field, sentence = plain_words(error, schema)
            errors[field] = f"{errors[field]} {sentence}" if field in errors else sentence
        return errors or {"": exc.problem.get("detail", str(exc))}

    def categories() -> list[dict]:
        return storage.all("categories", tenant=tenant(), sort="name")

    @app.get("/notes")
    def notes(errors=None, draft=None, status=200):
        filters = {"sort": "title"}
        category = request.args.get("category", "")
        if category:
            filters["category"] = category
        items = storage.query("notes", tenant=tenant(), limit=200, **filters)["items"]
        return page(
            "notes.html",
            status,
            notes=items,
            categories=categories(),
            category=category,
            errors=errors or {},
            draft=draft or {},
        )

    def note_from_form() -> dict:
        data = {"title": request.form.get("title", "").strip()}
        if request.form.get("body", "").strip():
            data["body"] = request.form["body"].strip()
        if request.form.get("category"):
            data["category"] = request.form["category"]
        return data

    @app.post("/notes")
    def create_note():
        data = note_from_form()
        try:
            storage.create("notes", data, tenant=tenant())
        except StorageError as exc:
            if exc.status != 422:
                raise
            return notes(errors=form_errors(exc, NOTE_SCHEMA), draft=request.form, status=422)
        return redirect("/notes", 303)

    def load_note(note_id: str) -> dict:
        try:
            return storage.get("notes", note_id, tenant=tenant())
        except StorageError as exc:
            if exc.status == 404:
                abort(404)
            raise

    @app.get("/notes/<note_id>")
    def edit_note(note_id: str, errors=None, status=200, draft=None):
        note = load_note(note_id)
        draft = draft or note["data"]
        return page(
            "note.html",
            status,
            note=note,
            categories=categories(),
            errors=errors or {},
            draft=draft,
        )

    @app.put("/notes/<note_id>")
    def update_note(note_id: str):
        data = note_from_form()
        # null removes a field in a JSON merge patch; the version the form showed guards the write
        changes = {**data, "body": data.get("body"), "category": data.get("category")}
        try:
            storage.patch(
                "notes", note_id, changes, tenant=tenant(), if_match=request.form.get("version")
            )
        except StorageError as exc:
            if exc.status not in (412, 422):
                raise
            errors = form_errors(exc, NOTE_SCHEMA)
            if exc.status == 412:
                errors = {"": "Someone saved this note after you opened it. Your text is below; "
                          "saving it again replaces their change."}  # fmt: skip
            # What the person typed, not what is stored, so nothing they wrote is lost.
            return edit_note(note_id, errors=errors, status=exc.status, draft=request.form)
        return redirect("/notes", 303)

    @app.delete("/notes/<note_id>")
    def delete_note(note_id: str):
        try:
            storage.delete("notes", note_id, tenant=tenant())
        except StorageError as exc:
            if exc.status != 404:
                raise
        return redirect("/notes", 303)

    @app.get("/categories")
    def list_categories(errors=None, status=200, draft=None):
        return page(
            "categories.html",
            status,
            categories=categories(),
            errors=errors or {},
            draft=draft or {},
        )

    @app.post("/categories")
    def create_category():
        try:
            storage.create(
                "categories", {"name": request.form.get("name", "").strip()}, tenant=tenant()
            )
        except StorageError as exc:
            if exc.status != 422:
                raise
            return list_categories(
                errors=form_errors(exc, CATEGORY_SCHEMA), status=422, draft=request.form
            )
        return redirect("/categories", 303)

    @app.delete("/categories/<category_id>")
    def delete_category(category_id: str):
        try:
            storage.delete("categories", category_id, tenant=tenant())
        except StorageError as exc:
            if exc.status != 404:
                raise
        return redirect("/categories", 303)

    @app.errorhandler(StorageError)
    def storage_refused(exc: StorageError):
        if exc.status != 401:
            raise exc
        log.error("the core refused our plugin token: %s", exc)
        # A 4xx fragment is shown to the user as it is (a 5xx gets the core's generic panel);
        # 424 Failed Dependency: this page depends on storage, which refused us.
        return (
            "<p>Notebook cannot reach its notes: the core refused its plugin token (it was "
            "rotated or revoked). An operator can rotate it and give Notebook the new one.</p>",
            424,
            {"Content-Type": "text/html"},
        )

    @app.errorhandler(404)
    def not_found(_exc):
        return "<p>There is no such note.</p>", 404, {"Content-Type": "text/html"}

    return app


def _settings() -> tuple[str, str, str, int]:
    core_url = os.environ.get("EXTFW_CORE_URL", "http://127.0.0.1:5000").rstrip("/")
    token_file = os.environ.get("PLUGIN_TOKEN_FILE", "instance/notebook.token")
    host = os.environ.get("PLUGIN_HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "9101"))
    return core_url, token_file, host, port


def enrol_in_background(core_url: str, token_file: str, base_url: str, give_up) -> None:
    """Register (or update) with the core from a thread, once the server is listening."""
    the_manifest = manifest(base_url)

    def enrol() -> None:
        try:
            register_or_update(
                core_url,
                the_manifest,
                token_file=token_file,
                enrolment_key=os.environ.get("EXTFW_ENROLMENT_KEY"),
            )
        except EnrolmentError as exc:
            log.error("cannot enrol with the core: %s", exc)
            give_up()

    threading.Thread(target=enrol, daemon=True).start()


def wsgi() -> Flask:
    """The app for gunicorn, as ``make run`` serves it (see ``gunicorn.conf.py`` beside this).

    Exit status 3 tells gunicorn the worker cannot boot, so a
    refused enrolment stops the server instead of restarting the worker for ever.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    core_url, token_file, host, port = _settings()
    app = create_app(core_url, token_file)
    enrol_in_background(core_url, token_file, f"http://{host}:{port}", lambda: os._exit(3))
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    core_url, token_file, host, port = _settings()
    server = make_server(host, port, create_app(core_url, token_file), threaded=True)

    def give_up() -> None:
        server.shutdown()
        os._exit(1)

    enrol_in_background(core_url, token_file, f"http://{host}:{port}", give_up)
    log.info("serving on http://%s:%d", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
