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

from extframework import relative_time
from extframework.authn import (
    api_user,
    bearer_token,
    require_api_operator,
    require_operator_page,
    require_plugin,
)
from extframework.blueprints import confirm, shown_once
from extframework.errors import BadRequest, DomainError, Forbidden, NotFound
from extframework.http import (
    Field,
    body_fields,
    json_body,
    optional_json_object,
    string_field,
)
from extframework.models import UNINSTALL_POLICIES, Plugin, Tenant, iso_utc
from extframework.openapi import openapi_document
from extframework.services import (
    archives,
    catalog,
    console_lists,
    enrolment,
    lifecycle,
    migrations,
    pending_updates,
    plugin_admin,
    plugin_page,
    plugin_tokens,
    registry,
    tenant_admin,
    uninstall,
)
from extframework.services.faults import recent as recent_faults
from extframework.services.manifest import meta_schema
from extframework.services.secrets import PLUGIN_TOKEN_PREFIX

bp = Blueprint("registry", __name__)
bp.add_app_template_filter(relative_time.time_tag, "ago")

NO_STORE = {"Cache-Control": "no-store"}

# The bodies of the operator's verbs (docs/registry.md): each is optional but these fields.
REASON = {"reason": string_field()}
STATE_CHANGE = {
    "reason": string_field(),
    "confirm": Field("a string or null", lambda value: value is None or isinstance(value, str)),
}
TENANTS = {
    "tenants": Field(
        "null (every tenant) or a list of tenant slugs",
        lambda value: (
            value is None or (isinstance(value, list) and all(isinstance(s, str) for s in value))
        ),
        required=True,
    )
}
POLICY = {
    "policy": Field(
        f"one of {', '.join(UNINSTALL_POLICIES)}",
        lambda value: value in UNINSTALL_POLICIES,
        required=True,
        keyword="enum",
    )
}
ROTATION = {"revoke_now": Field("true or false", lambda value: isinstance(value, bool))}


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
    plugin, token = registry.register(
        manifest,
        actor=f"enrolment-key:{key.id}",
        probe=registry.health_probe(float(current_app.config["HEALTH_TIMEOUT_S"])),
        enrolment_key=key,
    )
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
    plugins = [caller] if caller else catalog.list_plugins()
    summaries = [catalog.plugin_summary(p, counts=False) for p in plugins]
    return jsonify({"plugins": summaries})


@bp.get("/api/registry/plugins/<plugin_id>")
def get_plugin(plugin_id: str):
    caller = _reading_plugin()
    if caller is not None and caller.plugin_id != plugin_id:
        raise Forbidden("A plugin token reads only its own plugin's record.")
    return jsonify(catalog.plugin_summary(catalog.get_plugin(plugin_id)))


@bp.put("/api/registry/plugins/<plugin_id>")
def update_plugin(plugin_id: str):
    plugin = require_plugin()
    if plugin.plugin_id != plugin_id:
        raise Forbidden("A plugin token updates only its own plugin.")
    manifest = json_body()
    result = registry.update(
        plugin, manifest, actor=plugin_actor(plugin), app=current_app._get_current_object()
    )
    return _update_answer(plugin_id, result)


def _update_answer(plugin_id: str, result: dict):
    """200 for an applied update; 202 for a started migration or an update awaiting approval."""
    if "pending_update" in result:
        location = url_for("registry.pending_update", plugin_id=plugin_id)
        return jsonify(result), 202, {"Location": location}
    if "migration" in result:
        location = url_for("registry.migration_status", plugin_id=plugin_id)
        return jsonify(result), 202, {"Location": location}
    return jsonify(result)


@bp.get("/api/registry/plugins/<plugin_id>/pending-update")
def pending_update(plugin_id: str):
    caller = _reading_plugin()
    if caller is not None and caller.plugin_id != plugin_id:
        raise Forbidden("A plugin token reads only its own plugin's pending update.")
    plugin = catalog.get_plugin(plugin_id)
    row = pending_updates.for_plugin(plugin)
    return jsonify(
        {
            "plugin_id": plugin.plugin_id,
            "version": plugin.version,
            "base_url": plugin.base_url,
            "pending_update": pending_updates.summary(row) if row else None,
        }
    )


@bp.get("/api/registry/pending-updates")
@require_api_operator
def list_pending_updates():
    rows = pending_updates.list_pending()
    return jsonify({"pending_updates": [pending_updates.summary(row) for row in rows]})


@bp.post("/api/registry/pending-updates/<int:pending_id>/<any(approve, reject):verb>")
@require_api_operator
def decide_pending_update(pending_id: int, verb: str):
    reason = body_fields(optional_json_object(), REASON)["reason"] or ""
    if verb == "reject":
        rejected = plugin_admin.reject_update(
            pending_id, actor=api_user().actor, reason=reason[:200]
        )
        return jsonify({"rejected": rejected})
    result = plugin_admin.approve_update(
        pending_id, actor=api_user().actor, app=current_app._get_current_object()
    )
    return _update_answer(result["plugin_id"], result)


@bp.post("/api/registry/plugins/<plugin_id>/<any(disable, enable, deregister):verb>")
@require_api_operator
def change_state(plugin_id: str, verb: str):
    fields = body_fields(optional_json_object(), STATE_CHANGE)
    reason, confirm = fields["reason"] or "", fields["confirm"]
    plugin = catalog.get_plugin(plugin_id)
    outcome = plugin_admin.change_state(
        plugin,
        verb,
        actor=api_user().actor,
        reason=reason[:200],
        confirm=confirm,
        archive_root=archives.archive_root(current_app),
    )
    summary = catalog.plugin_summary(plugin)
    if outcome is not None:
        summary["uninstall"] = outcome
    return jsonify(summary)


@bp.post("/api/registry/plugins/<plugin_id>/rotate-token")
def rotate_token(plugin_id: str):
    """An operator, or the plugin itself with a live token of its own, rotates its token."""
    token = bearer_token()
    caller = require_plugin() if token and token.startswith(PLUGIN_TOKEN_PREFIX) else None
    if caller is not None and caller.plugin_id != plugin_id:
        raise Forbidden("A plugin token rotates only its own plugin's token.")
    if caller is None and not api_user().is_operator:
        raise Forbidden("Only an operator, or the plugin itself with its token, may rotate it.")
    # No body, or {"revoke_now": false}: a rotation with the grace period.
    revoke_now = bool(body_fields(optional_json_object(), ROTATION)["revoke_now"])
    plugin = caller or catalog.get_plugin(plugin_id)
    token, old_expires = plugin_admin.rotate_token(
        plugin,
        actor=plugin_actor(plugin) if caller else api_user().actor,
        grace_s=float(current_app.config["TOKEN_GRACE_S"]),
        revoke_now=revoke_now,
    )
    body = {
        "plugin_id": plugin.plugin_id,
        "plugin_token": token,
        "old_token_expires_at": iso_utc(old_expires),
        "tokens": plugin_tokens.live_tokens(plugin),
    }
    return jsonify(body), 200, NO_STORE


@bp.put("/api/registry/plugins/<plugin_id>/tenants")
@require_api_operator
def set_tenants(plugin_id: str):
    slugs = body_fields(json_body(), TENANTS)["tenants"]
    plugin = catalog.get_plugin(plugin_id)
    plugin_admin.set_tenants(plugin, slugs, actor=api_user().actor)
    return jsonify(catalog.plugin_summary(plugin))


@bp.get("/api/registry/plugins/<plugin_id>/migration")
@require_api_operator
def migration_status(plugin_id: str):
    return jsonify(migrations.status(catalog.get_plugin(plugin_id)))


@bp.post("/api/registry/plugins/<plugin_id>/migration/retry")
@require_api_operator
def retry_migration(plugin_id: str):
    body_fields(optional_json_object(), {})
    plugin = catalog.get_plugin(plugin_id)
    migrations.retry(plugin, actor=api_user().actor, app=current_app._get_current_object())
    location = url_for("registry.migration_status", plugin_id=plugin_id)
    return jsonify(migrations.status(plugin)), 202, {"Location": location}


@bp.get("/api/registry/plugins/<plugin_id>/versions")
def list_versions(plugin_id: str):
    caller = _reading_plugin()
    if caller is not None and caller.plugin_id != plugin_id:
        raise Forbidden("A plugin token reads only its own plugin's versions.")
    plugin = catalog.get_plugin(plugin_id)
    return jsonify({"plugin_id": plugin_id, "versions": catalog.manifest_versions(plugin)})


@bp.get("/api/registry/plugins/<plugin_id>/diff")
def version_diff(plugin_id: str):
    caller = _reading_plugin()
    if caller is not None and caller.plugin_id != plugin_id:
        raise Forbidden("A plugin token reads only its own plugin's versions.")
    versions = request.args.get("from"), request.args.get("to")
    missing = [name for name, value in zip(("from", "to"), versions, strict=True) if not value]
    if missing:
        raise BadRequest(
            "Name two recorded versions: ?from=1.0.0&to=2.0.0.",
            parameter=missing[0],
            kind="invalid-query",
        )
    return jsonify(catalog.version_diff(catalog.get_plugin(plugin_id), *versions))


@bp.put("/api/registry/plugins/<plugin_id>/tenants/<tenant>/uninstall-policy")
def set_uninstall_policy(plugin_id: str, tenant: str):
    """An operator, or an admin of ``tenant``, sets its policy (a tenant admin sees only theirs)."""
    person = api_user()
    tenant_admin.require_admin(person)
    policy = body_fields(json_body(), POLICY)["policy"]
    tenant_admin.set_policy(person, plugin_id, tenant, policy)
    policies = uninstall.policies(catalog.get_plugin(plugin_id))
    if not person.is_operator:
        policies = [entry for entry in policies if entry["tenant"] == person.tenant]
    return jsonify({"plugin_id": plugin_id, "uninstall_policies": policies})


@bp.get("/api/registry/archives")
@require_api_operator
def list_archives():
    return jsonify({"archives": archives.list_archives(request.args.get("plugin_id"))})


# --- console ------------------------------------------------------------------------------


@bp.get("/console")
def console():
    """Operators land on the plugins; a tenant's admin on their users (the guards decide)."""
    if current_user.is_authenticated and not current_user.is_operator:
        return redirect(url_for("auth.console_users"))
    return redirect(url_for("registry.console_plugins"))


@bp.get("/console/plugins")
@require_operator_page
def console_plugins():
    page, rows, pending = console_lists.plugins(request.args)
    return render_template("console/plugins.html", page=page, rows=rows, pending=pending)


def _render_plugin(plugin: Plugin, **extra) -> str:
    return render_template(
        "console/plugin.html",
        plugin=plugin,
        summary=catalog.plugin_summary(plugin),
        versions=catalog.manifest_versions(plugin),
        collections=catalog.collections(plugin),
        **_plugin_page_summary(plugin),
        all_tenants=list(Tenant.select().order_by(Tenant.slug)),
        rules=lifecycle.rules(plugin.state),
        policies=uninstall.policies(plugin),
        policy_names=uninstall.UNINSTALL_POLICIES,
        migration=migrations.status(plugin),
        archives=archives.list_archives(plugin.plugin_id),
        pending=_pending_summary(plugin),
        faults=recent_faults(plugin.plugin_id),
        **extra,
    )


def _plugin_page_summary(plugin: Plugin) -> dict:
    window = int(current_app.config["HEALTH_HISTORY"])
    return {
        "meaning": plugin_page.meaning(plugin.state),
        "summary_parts": plugin_page.summary_parts(plugin, window),
        "last_check": plugin_page.health_parts(plugin),
        "reason": plugin_page.reason,
        "health": plugin_page.health_history(plugin, request.args),
    }


def _pending_summary(plugin: Plugin) -> dict | None:
    row = pending_updates.for_plugin(plugin)
    return pending_updates.summary(row) if row else None


def _plugin_url(plugin_id: str) -> str:
    return url_for("registry.console_plugin", plugin_id=plugin_id)


def _ask(action: str, plugin: Plugin, **words: str) -> Response | None:
    return confirm.ask_about(action, plugin.name, cancel=_plugin_url(plugin.plugin_id), **words)


def _back_to_plugin(plugin_id: str) -> Response:
    """Answer a console POST with 303 to the plugin's page (post/redirect/get)."""
    return redirect(_plugin_url(plugin_id), 303)


@bp.get("/console/plugins/<plugin_id>")
@require_operator_page
def console_plugin(plugin_id: str):
    token = shown_once.take("plugin-token", plugin_id)
    if token is None:
        return _render_plugin(catalog.get_plugin(plugin_id))
    return Response(
        _render_plugin(catalog.get_plugin(plugin_id), new_token=token), headers=NO_STORE
    )


@bp.get("/console/live")
@require_operator_page
def console_live():
    """The state of the plugins a console page shows, for static/live.js (issue 17)."""
    plugins = plugin_page.live(
        request.args.getlist("plugin"),
        request.args.getlist("summary"),
        window=int(current_app.config["HEALTH_HISTORY"]),
    )
    return jsonify({"plugins": plugins}), 200, NO_STORE


@bp.post("/console/plugins/<plugin_id>/<any(disable, enable, deregister):verb>")
@require_operator_page
def console_change_state(plugin_id: str, verb: str):
    plugin = catalog.get_plugin(plugin_id)
    if verb != "enable" and (page := _ask(verb, plugin)):
        return page
    try:
        plugin_admin.change_state(
            plugin,
            verb,
            actor=current_user.actor,
            reason=request.form.get("reason", ""),
            confirm=request.form.get("purge_confirm", "").strip() or None,
            archive_root=archives.archive_root(current_app),
        )
    except DomainError as exc:
        flash(exc.detail, "error")
    else:
        flash(f"{plugin.name} is now {plugin.state}.", "ok")
    return _back_to_plugin(plugin_id)


@bp.post("/console/plugins/<plugin_id>/migration/retry")
@require_operator_page
def console_retry_migration(plugin_id: str):
    plugin = catalog.get_plugin(plugin_id)
    try:
        run = migrations.retry(
            plugin, actor=current_user.actor, app=current_app._get_current_object()
        )
    except DomainError as exc:
        flash(exc.detail, "error")
    else:
        flash(f"Attempt {run.attempts} of the migration to {run.to_version} started.", "ok")
    return _back_to_plugin(plugin_id)


def _check_pending(plugin_id: str, pending_id: int) -> None:
    if pending_updates.get(pending_id).plugin.plugin_id != plugin_id:
        raise NotFound(f"Pending update {pending_id} is not {plugin_id}'s.")


@bp.post(
    "/console/plugins/<plugin_id>/pending-updates/<int:pending_id>/<any(approve, reject):verb>"
)
@require_operator_page
def console_decide_pending_update(plugin_id: str, pending_id: int, verb: str):
    try:
        _check_pending(plugin_id, pending_id)
    except DomainError as exc:  # asked nothing about an update that is not there
        flash(exc.detail, "error")
        return _back_to_plugin(plugin_id)
    if page := _ask(verb, catalog.get_plugin(plugin_id)):
        return page
    try:
        _check_pending(plugin_id, pending_id)
        if verb == "reject":
            plugin_admin.reject_update(
                pending_id, actor=current_user.actor, reason=request.form.get("reason", "")[:200]
            )
            flash(f"Update {pending_id} rejected; the plugin stays where it is.", "ok")
        else:
            result = plugin_admin.approve_update(
                pending_id, actor=current_user.actor, app=current_app._get_current_object()
            )
            plugin = catalog.get_plugin(plugin_id)
            started = " and its migration started" if "migration" in result else ""
            flash(f"Update to {result['version']} approved{started}: {plugin.base_url}.", "ok")
    except DomainError as exc:
        flash(exc.detail, "error")
    return _back_to_plugin(plugin_id)


@bp.post("/console/plugins/<plugin_id>/uninstall-policy")
@require_operator_page
def console_set_uninstall_policy(plugin_id: str):
    plugin = catalog.get_plugin(plugin_id)
    tenant, policy = request.form.get("tenant", ""), request.form.get("policy", "")
    if policy == "purge" and (page := _ask("purge", plugin, tenant=tenant)):
        return page
    try:
        uninstall.set_policy(plugin, tenant, policy, actor=current_user.actor)
    except DomainError as exc:
        flash(exc.detail, "error")
    else:
        flash(f"Uninstall policy in {tenant}: {policy}.", "ok")
    return _back_to_plugin(plugin_id)


@bp.get("/console/plugins/<plugin_id>/diff")
@require_operator_page
def console_version_diff(plugin_id: str):
    plugin = catalog.get_plugin(plugin_id)
    versions = catalog.manifest_versions(plugin)
    names = [row["version"] for row in versions]
    old = request.args.get("from") or (names[1] if len(names) > 1 else names[0])
    new = request.args.get("to") or names[0]
    result = catalog.version_diff(plugin, old, new)
    return render_template("console/diff.html", plugin=plugin, versions=names, diff=result)


@bp.post("/console/plugins/<plugin_id>/rotate-token")
@require_operator_page
def console_rotate_token(plugin_id: str):
    plugin = catalog.get_plugin(plugin_id)
    revoke_now = request.form.get("revoke_now") == "on"
    old = "stops working now" if revoke_now else "keeps working for the grace period"
    if page := _ask("rotate", plugin, old=old):
        return page
    try:
        token, old_expires = plugin_admin.rotate_token(
            plugin,
            actor=current_user.actor,
            grace_s=float(current_app.config["TOKEN_GRACE_S"]),
            revoke_now=revoke_now,
        )
    except DomainError as exc:
        flash(exc.detail, "error")
    else:
        shown_once.keep("plugin-token", plugin_id, token)
        if old_expires is None:
            flash("The old token no longer works.", "ok")
        else:
            flash(f"The old token keeps working until {iso_utc(old_expires)}.", "ok")
    return _back_to_plugin(plugin_id)


@bp.post("/console/plugins/<plugin_id>/tenants")
@require_operator_page
def console_set_tenants(plugin_id: str):
    plugin = catalog.get_plugin(plugin_id)
    slugs = None if request.form.get("scope") != "selected" else request.form.getlist("tenant")
    if slugs is not None and (page := _ask("restrict", plugin, tenants=", ".join(slugs) or "none")):
        return page
    try:
        plugin_admin.set_tenants(plugin, slugs, actor=current_user.actor)
    except DomainError as exc:
        flash(exc.detail, "error")
    else:
        flash("Tenant availability saved.", "ok")
    return _back_to_plugin(plugin_id)


@bp.get("/console/enrolment-keys")
@require_operator_page
def console_enrolment_keys():
    return _render_keys()


def _render_keys(status: int = 200, **extra):
    page, keys = console_lists.enrolment_keys(request.args)
    extra.setdefault("new_key", shown_once.take("enrolment-key", ""))
    body = render_template("console/enrolment_keys.html", page=page, keys=keys, **extra)
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
            actor=current_user.actor,
            uses=uses,
            expires_in=expires,
            label=form.get("label", ""),
            plugin_id=form.get("plugin_id", ""),
        )
    except DomainError as exc:
        return _render_keys(exc.status, error=exc.detail)
    shown_once.keep("enrolment-key", "", secret)
    return redirect(url_for("registry.console_enrolment_keys"), 303)


@bp.post("/console/enrolment-keys/<int:key_id>/revoke")
@require_operator_page
def console_revoke_enrolment_key(key_id: int):
    question = f"Really revoke enrolment key {key_id}? No plugin can register with it again."
    cancel = url_for("registry.console_enrolment_keys")
    if page := confirm.ask(question, button="Revoke", cancel=cancel):
        return page
    enrolment.revoke_key(key_id, actor=current_user.actor)
    flash(f"Enrolment key {key_id} revoked.", "ok")
    return redirect(url_for("registry.console_enrolment_keys"), 303)


@bp.get("/console/audit")
@require_operator_page
def console_audit():
    page, events, filters = console_lists.audit_events(request.args)
    return render_template(
        "console/audit.html",
        page=page,
        events=events,
        older=console_lists.older_cursor(page),
        filters=filters,
    )
