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

    def form_errors(exc: StorageError) -> list[str]:
        return [
            f"{e.get('pointer', '').lstrip('/')}: {e.get('message', '')}" for e in exc.errors
        ] or [exc.problem.get("detail", str(exc))]

    def categories() -> list[dict]:
        return storage.all("categories", tenant=tenant(), sort="name")

    @app.get("/notes")
    def notes(errors=(), draft=None, status=200):
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
            errors=errors,
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
            return notes(errors=form_errors(exc), draft=data, status=422)
        return redirect("/notes", 303)

    def load_note(note_id: str) -> dict:
        try:
            return storage.get("notes", note_id, tenant=tenant())
        except StorageError as exc:
            if exc.status == 404:
                abort(404)
            raise

    @app.get("/notes/<note_id>")
    def edit_note(note_id: str, errors=(), status=200):
        return page(
            "note.html", status, note=load_note(note_id), categories=categories(), errors=errors
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
            return edit_note(note_id, errors=form_errors(exc), status=exc.status)
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
    def list_categories(errors=(), status=200):
        return page("categories.html", status, categories=categories(), errors=errors)

    @app.post("/categories")
    def create_category():
        try:
            storage.create(
                "categories", {"name": request.form.get("name", "").strip()}, tenant=tenant()
            )
        except StorageError as exc:
            if exc.status != 422:
                raise
            return list_categories(errors=form_errors(exc), status=422)
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
