"""The package manager over HTTP: the registry API and the operator console's plugin pages."""

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from extframework.authn import (
    api_user,
    bearer_token,
    require_api_operator,
    require_operator_page,
    require_plugin,
)
from extframework.errors import BadRequest, DomainError, Forbidden
from extframework.http import json_body
from extframework.models import Plugin, Tenant
from extframework.openapi import openapi_document
from extframework.services import enrolment, health, lifecycle, registry
from extframework.services.manifest import meta_schema
from extframework.services.secrets import PLUGIN_TOKEN_PREFIX

bp = Blueprint("registry", __name__)

NO_STORE = {"Cache-Control": "no-store"}


def user_actor(user) -> str:
    return f"user:{user.email}"


def plugin_actor(plugin: Plugin) -> str:
    return f"plugin:{plugin.plugin_id}"


# --- API ----------------------------------------------------------------------------------


@bp.get("/api/registry/manifest-schema")
def manifest_schema():
    response = jsonify(meta_schema())
    response.mimetype = "application/schema+json"
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response


@bp.get("/api/openapi.json")
def openapi():
    """Publish the API contract beside the manifest contract."""
    response = jsonify(openapi_document())
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response


@bp.post("/api/registry/plugins")
def register_plugin():
    key = enrolment.check_key(bearer_token())
    manifest = json_body()
    plugin, token = registry.register(manifest, actor=f"enrolment-key:{key.id}", enrolment_key=key)
    body = {"plugin_id": plugin.plugin_id, "plugin_token": token, "state": plugin.state}
    location = url_for("registry.get_plugin", plugin_id=plugin.plugin_id)
    return jsonify(body), 201, {"Location": location, **NO_STORE}


def _reading_plugin() -> Plugin | None:
    """Return the calling plugin when it sent its token; otherwise require an operator."""
    token = bearer_token()
    if token is not None and token.startswith(PLUGIN_TOKEN_PREFIX):
        return require_plugin()
    if not api_user().is_operator:
        raise Forbidden("Only an operator, or the plugin itself, may read the registry.")
    return None


@bp.get("/api/registry/plugins")
def list_plugins():
    caller = _reading_plugin()
    plugins = [caller] if caller else registry.list_plugins()
    return jsonify({"plugins": [registry.plugin_summary(p) for p in plugins]})


@bp.get("/api/registry/plugins/<plugin_id>")
def get_plugin(plugin_id: str):
    caller = _reading_plugin()
    if caller is not None and caller.plugin_id != plugin_id:
        raise Forbidden("A plugin token reads only its own plugin's record.")
    return jsonify(registry.plugin_summary(registry.get_plugin(plugin_id)))


@bp.put("/api/registry/plugins/<plugin_id>")
def update_plugin(plugin_id: str):
    plugin = require_plugin()
    if plugin.plugin_id != plugin_id:
        raise Forbidden("A plugin token updates only its own plugin.")
    manifest = json_body()
    return jsonify(registry.update(plugin, manifest, actor=plugin_actor(plugin)))


@bp.post("/api/registry/plugins/<plugin_id>/<any(disable, enable, deregister):verb>")
@require_api_operator
def change_state(plugin_id: str, verb: str):
    body = request.get_json(silent=True) if request.content_length else None
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    if not isinstance(reason, str):
        raise BadRequest("'reason' must be a string.")
    plugin = registry.get_plugin(plugin_id)
    registry.change_state(plugin, verb, actor=user_actor(api_user()), reason=reason[:200])
    return jsonify(registry.plugin_summary(plugin))


@bp.post("/api/registry/plugins/<plugin_id>/rotate-token")
@require_api_operator
def rotate_token(plugin_id: str):
    plugin = registry.get_plugin(plugin_id)
    token = registry.rotate_token(plugin, actor=user_actor(api_user()))
    return jsonify({"plugin_id": plugin.plugin_id, "plugin_token": token}), 200, NO_STORE


@bp.put("/api/registry/plugins/<plugin_id>/tenants")
@require_api_operator
def set_tenants(plugin_id: str):
    body = json_body()
    slugs = body.get("tenants")
    if slugs is not None and not (
        isinstance(slugs, list) and all(isinstance(s, str) for s in slugs)
    ):
        raise BadRequest(
            "Send {'tenants': null} for every tenant or {'tenants': ['slug', ...]}.",
            errors=[{"path": "$.tenants", "message": "null or a list of tenant slugs"}],
        )
    plugin = registry.get_plugin(plugin_id)
    registry.set_tenants(plugin, slugs, actor=user_actor(api_user()))
    return jsonify(registry.plugin_summary(plugin))


# --- console ------------------------------------------------------------------------------


@bp.get("/console")
@require_operator_page
def console():
    return redirect(url_for("registry.console_plugins"))


@bp.get("/console/plugins")
@require_operator_page
def console_plugins():
    rows = [(p, registry.last_health(p)) for p in registry.list_plugins()]
    return render_template("console/plugins.html", rows=rows)


def _render_plugin(plugin: Plugin, **extra) -> str:
    return render_template(
        "console/plugin.html",
        plugin=plugin,
        summary=registry.plugin_summary(plugin),
        versions=registry.manifest_versions(plugin),
        collections=registry.collections(plugin),
        checks=health.recent_checks(plugin, int(current_app.config["HEALTH_HISTORY"])),
        all_tenants=list(Tenant.select().order_by(Tenant.slug)),
        storage=lifecycle.STORAGE,
        **extra,
    )


@bp.get("/console/plugins/<plugin_id>")
@require_operator_page
def console_plugin(plugin_id: str):
    return _render_plugin(registry.get_plugin(plugin_id))


@bp.post("/console/plugins/<plugin_id>/<any(disable, enable, deregister):verb>")
@require_operator_page
def console_change_state(plugin_id: str, verb: str):
    plugin = registry.get_plugin(plugin_id)
    try:
        registry.change_state(
            plugin, verb, actor=user_actor(current_user), reason=request.form.get("reason", "")
        )
    except DomainError as exc:
        flash(exc.detail, "error")
    else:
        flash(f"{plugin.name} is now {plugin.state}.", "ok")
    return redirect(url_for("registry.console_plugin", plugin_id=plugin_id))


@bp.post("/console/plugins/<plugin_id>/rotate-token")
@require_operator_page
def console_rotate_token(plugin_id: str):
    plugin = registry.get_plugin(plugin_id)
    try:
        token = registry.rotate_token(plugin, actor=user_actor(current_user))
    except DomainError as exc:
        flash(exc.detail, "error")
        return redirect(url_for("registry.console_plugin", plugin_id=plugin_id))
    return Response(_render_plugin(plugin, new_token=token), headers=NO_STORE)


@bp.post("/console/plugins/<plugin_id>/tenants")
@require_operator_page
def console_set_tenants(plugin_id: str):
    plugin = registry.get_plugin(plugin_id)
    slugs = None if request.form.get("scope") != "selected" else request.form.getlist("tenant")
    try:
        registry.set_tenants(plugin, slugs, actor=user_actor(current_user))
    except DomainError as exc:
        flash(exc.detail, "error")
    else:
        flash("Tenant availability saved.", "ok")
    return redirect(url_for("registry.console_plugin", plugin_id=plugin_id))


@bp.get("/console/enrolment-keys")
@require_operator_page
def console_enrolment_keys():
    return _render_keys()


def _render_keys(status: int = 200, **extra):
    keys = [enrolment.key_summary(k) for k in enrolment.list_keys()]
    body = render_template("console/enrolment_keys.html", keys=keys, **extra)
    return Response(body, status, headers=NO_STORE)


@bp.post("/console/enrolment-keys")
@require_operator_page
def console_create_enrolment_key():
    form = request.form
    try:
        uses = int(form["uses"]) if form.get("uses", "").strip() else None
    except ValueError:
        return _render_keys(400, error="Uses must be a whole number.")
    try:
        expires = enrolment.parse_duration(form["expires"]) if form.get("expires") else None
        _, secret = enrolment.create_key(
            actor=user_actor(current_user),
            uses=uses,
            expires_in=expires,
            label=form.get("label", ""),
        )
    except DomainError as exc:
        return _render_keys(exc.status, error=exc.detail)
    return _render_keys(new_key=secret)


@bp.post("/console/enrolment-keys/<int:key_id>/revoke")
@require_operator_page
def console_revoke_enrolment_key(key_id: int):
    enrolment.revoke_key(key_id, actor=user_actor(current_user))
    flash(f"Enrolment key {key_id} revoked.", "ok")
    return redirect(url_for("registry.console_enrolment_keys"))
