"""The filesystem over HTTP: ``/api/storage/…`` for plugins, and the operator's export."""

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from extframework import authn
from extframework.http import DocIdConverter, json_body
from extframework.models import Plugin
from extframework.services import batch as batches
from extframework.services import export, storage

bp = Blueprint("storage", __name__)
bp.record_once(lambda state: state.app.url_map.converters.setdefault("docid", DocIdConverter))


def _caller() -> tuple[Plugin, bool]:
    """Return the calling plugin and whether the call is made in its migration's context."""
    return authn.storage_caller()


def _namespace(collection: str, *, write: bool) -> storage.Namespace:
    plugin, migration_context = _caller()
    return storage.open_collection(
        plugin,
        request.headers.get("X-Tenant-ID"),
        collection,
        write=write,
        migration_context=migration_context,
    )


def _body() -> dict:
    return json_body(expect=dict)


def _document(doc: dict, status: int = 200) -> Response:
    response = jsonify(doc)
    response.status_code = status
    response.headers["ETag"] = storage.etag(doc["version"])
    return response


@bp.post("/api/storage/<collection>")
def create(collection: str):
    ns = _namespace(collection, write=True)
    doc = storage.create_document(ns, _body())
    response = _document(doc, 201)
    # Built as text, not with url_for (a tenth of a create's time): both parts are URL-safe,
    # a collection name by the manifest schema's pattern and an id as generated.
    response.headers["Location"] = f"{request.script_root}/api/storage/{collection}/{doc['id']}"
    return response


@bp.get("/api/storage/<collection>")
def search(collection: str):
    ns = _namespace(collection, write=False)
    config = current_app.config
    page = storage.query_documents(
        ns,
        request.args.items(multi=True),
        secret_key=config["SECRET_KEY"].encode(),
        fallback_keys=tuple(key.encode() for key in config["SECRET_KEY_FALLBACKS"]),
    )
    return jsonify(page)


@bp.post("/api/storage/<collection>/_batch")
def batch(collection: str):
    ns = _namespace(collection, write=True)
    return jsonify({"results": batches.run(ns, _body())})


@bp.get("/api/storage/<collection>/<docid:doc_id>")
def read(collection: str, doc_id: str):
    ns = _namespace(collection, write=False)
    return _document(storage.get_document(ns, doc_id))


@bp.patch("/api/storage/<collection>/<docid:doc_id>")
def patch(collection: str, doc_id: str):
    ns = _namespace(collection, write=True)
    doc = storage.patch_document(ns, doc_id, _body(), if_match=request.headers.get("If-Match"))
    return _document(doc)


@bp.delete("/api/storage/<collection>/<docid:doc_id>")
def delete(collection: str, doc_id: str):
    ns = _namespace(collection, write=True)
    storage.delete_document(ns, doc_id, if_match=request.headers.get("If-Match"))
    return "", 204


@bp.get("/api/registry/plugins/<plugin_id>/export")
@authn.require_api_operator
def export_plugin(plugin_id: str):
    lines = export.export_plugin(plugin_id, actor=authn.api_user().email)
    return Response(
        stream_with_context(lines),
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{plugin_id}-export.jsonl"'},
    )


@bp.record_once
def _bench_routes(state) -> None:
    """Add a no-op JSON route for bench/storage.py's baseline, only when BENCH_ROUTES is set."""
    if not state.app.config.get("BENCH_ROUTES"):
        return

    def noop():
        return jsonify({"ok": True, "echo": len(_body())}), 201

    state.app.add_url_rule("/api/bench/noop", "bench_noop", noop, methods=["POST"])
