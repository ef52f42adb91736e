"""Identity over HTTP: login, logout and password pages, user tokens, the JWKS, and the console's
people pages."""

import logging
from functools import wraps

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from extframework.authn import (
    Identity,
    api_user,
    keystore,
    require_api_user,
    require_operator_page,
)
from extframework.blueprints import confirm
from extframework.config import JWKS_MAX_AGE_S
from extframework.errors import DomainError, NotFound
from extframework.http import body_fields, json_body, string_field
from extframework.models import ROLES, UNINSTALL_POLICIES
from extframework.services import accounts, sessions, tenant_admin, tokens, urls

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)


def _limits() -> accounts.LoginLimits:
    config = current_app.config
    return accounts.LoginLimits(
        max_failures=int(config["LOGIN_MAX_FAILURES"]),
        account_max_failures=int(config["LOGIN_ACCOUNT_MAX_FAILURES"]),
        window_s=int(config["LOGIN_WINDOW_S"]),
        known_address_days=int(config["LOGIN_KNOWN_ADDRESS_DAYS"]),
        address_slow_after=int(config["LOGIN_ADDRESS_SLOW_AFTER"]),
        address_delay_s=float(config["LOGIN_ADDRESS_DELAY_S"]),
    )


def _client() -> str:
    return request.remote_addr or "unknown"


def _authenticate(email: str, password: str, via: str):
    return accounts.authenticate(email, password, _client(), limits=_limits(), via=via)


def _start_session(user_id: int, generation: int) -> None:
    """Log this browser in on a new session: nothing the old one held survives (no fixation).

    Dropping the session drops Flask-WTF's CSRF secret (``session["csrf_token"]``) too, so a
    CSRF token issued before is refused after; the next page gets a new one.
    """
    session.clear()
    g.pop("csrf_token", None)  # Flask-WTF's per-request cache of the signed token
    identity = Identity.load(user_id, generation)
    if identity is not None:  # None: the account changed in between; stay logged out
        login_user(identity)


def _safe_next(target: str | None) -> str:
    """Only follow a `next` that stays on this site, read the way the browser will read it."""
    return (target and urls.local_path(target)) or url_for("shell.home")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error, status, headers = None, 200, {}
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "")
        try:
            user = _authenticate(email, request.form.get("password", ""), "session")
        except DomainError as exc:
            error, status, headers = exc.detail, exc.status, exc.headers
        else:
            _start_session(user.id, user.session_generation)
            log.info("login: user %s", user.id)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, email=email), status, headers


@bp.post("/logout")
def logout():
    """Log out: end this person's sessions and user JWTs everywhere (SPEC §4)."""
    if current_user.is_authenticated:
        sessions.log_out(current_user.id)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change one's own password; other sessions end, this one stays logged in."""
    error = None
    if request.method == "POST":
        form = request.form
        try:
            generation = sessions.change_password(
                current_user.id,
                form.get("current_password", ""),
                form.get("new_password", ""),
                form.get("confirm_password", ""),
                client=_client(),
                limits=_limits(),
            )
        except DomainError as exc:
            error = exc
        else:
            _start_session(current_user.id, generation)
            flash("Your password is changed; your other sessions are logged out.", "ok")
            return redirect(url_for("auth.change_password"), 303)
    body = render_template("account_password.html", error=error)
    return Response(body, error.status if error else 200, error.headers if error else None)


@bp.get("/account")
@login_required
def account():
    return redirect(url_for("auth.change_password"))


@bp.post("/account/other-sessions/end")
@login_required
def end_other_sessions():
    """Sign out of every other browser and user JWT; this session stays logged in."""
    question = "Really sign out of every other session? Other browsers and user tokens end."
    back = url_for("auth.change_password")
    if page := confirm.ask(question, button="Sign out other sessions", cancel=back):
        return page
    _start_session(current_user.id, sessions.end_other_sessions(current_user.id))
    flash("Your other sessions are signed out; this one stays.", "ok")
    return redirect(back, 303)


@bp.get("/.well-known/jwks.json")
def jwks():
    response = jsonify(keystore().jwks())
    response.cache_control.public = True
    response.cache_control.max_age = JWKS_MAX_AGE_S
    return response


CREDENTIALS = {"email": string_field(required=True), "password": string_field(required=True)}


@bp.post("/api/auth/token")
def issue_token():
    body = body_fields(json_body(), CREDENTIALS)
    user = _authenticate(body["email"], body["password"], "token")
    ttl = int(current_app.config["USER_JWT_TTL_S"])
    token = tokens.mint_user_jwt(
        keystore(),
        issuer=current_app.config["BASE_URL"],
        user_id=str(user.id),
        email=user.email,
        tenant=user.tenant.slug,
        role=user.role,
        ttl_s=ttl,
        generation=user.session_generation,
    )
    return jsonify({"access_token": token, "token_type": "Bearer", "expires_in": ttl})


@bp.get("/api/auth/me")
@require_api_user
def me():
    user = api_user()
    return jsonify(
        {
            "id": user.id,
            "email": user.email,
            "name": user.display_name,
            "role": user.role,
            "tenant": user.tenant,
            "operator": user.is_operator,
            "authenticated_by": user.via,
        }
    )


# --- console: users and tenants -------------------------------------------------------------
# Operators see every tenant; a tenant's admin sees and changes only their own (services/
# tenant_admin.py refuses the rest, whatever the pages show).


def require_admin_page(view):
    """Guard a people page: log in first, then be an operator or a tenant's admin."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        tenant_admin.require_admin(current_user)
        return view(*args, **kwargs)

    return wrapper


def _render_users(error: DomainError | None = None, form: dict | None = None):
    body = render_template(
        "console/users.html",
        page=tenant_admin.users_page(current_user, request.args),
        tenants=tenant_admin.tenants(current_user),
        roles=ROLES,
        error=error,
        form=form or {},
    )
    return Response(body, error.status if error else 200)


def _back_to_users() -> Response:
    return redirect(url_for("auth.console_users"), 303)


@bp.get("/console/users")
@require_admin_page
def console_users():
    return _render_users()


@bp.post("/console/users")
@require_admin_page
def console_create_user():
    form = request.form
    try:
        user = tenant_admin.create_user(
            current_user,
            form.get("email", ""),
            form.get("password", ""),
            role=form.get("role", ""),
            operator=form.get("operator") == "on",
            tenant=form.get("tenant", ""),
            name=form.get("name", ""),
        )
    except DomainError as exc:
        kept = {k: form.get(k, "") for k in ("email", "name", "role", "tenant", "operator")}
        return _render_users(exc, kept)
    flash(f"Created user {user.email}.", "ok")
    return _back_to_users()


@bp.post("/console/users/<int:user_id>/role")
@require_admin_page
def console_set_role(user_id: int):
    target = tenant_admin.user(current_user, user_id)
    role, operator = request.form.get("role", ""), request.form.get("operator") == "on"
    flag = ", operator" if operator else ""
    question = f"Really make {target.email} {role}{flag}? Their sessions end."
    if page := confirm.ask(
        question, button="Change the role", cancel=url_for("auth.console_users")
    ):
        return page
    try:
        user = tenant_admin.set_role(current_user, user_id, role, operator=operator)
    except DomainError as exc:
        return _render_users(exc)
    if user.id == current_user.id:  # one's own role change ends one's sessions: keep this one
        _start_session(user.id, sessions.current_generation(user.id))
    flash(f"{user.email} is now {user.role}{', operator' if user.is_operator else ''}.", "ok")
    return _back_to_users()


@bp.post("/console/users/<int:user_id>/<any(deactivate, reactivate):verb>")
@require_admin_page
def console_set_active(user_id: int, verb: str):
    target = tenant_admin.user(current_user, user_id)
    if verb == "deactivate":
        question = f"Really deactivate {target.email}? Their sessions end."
        if page := confirm.ask(question, button="Deactivate", cancel=url_for("auth.console_users")):
            return page
    try:
        user = tenant_admin.set_active(current_user, user_id, verb == "reactivate")
    except DomainError as exc:
        return _render_users(exc)
    flash(f"{user.email} is {'active' if user.is_active else 'deactivated'}.", "ok")
    return _back_to_users()


@bp.post("/console/users/<int:user_id>/password")
@require_admin_page
def console_set_password(user_id: int):
    """An admin's password reset: the user's sessions and user JWTs end."""
    target = tenant_admin.user(current_user, user_id)
    question = f"Really set a new password for {target.email}? Their sessions end."
    if page := confirm.ask(question, button="Set password", cancel=url_for("auth.console_users")):
        return page
    try:
        user = tenant_admin.set_password(current_user, user_id, request.form.get("password", ""))
    except DomainError as exc:
        return _render_users(exc)
    flash(f"Set a new password for {user.email}; their sessions are logged out.", "ok")
    return _back_to_users()


def _render_tenants(error: DomainError | None = None, form: dict | None = None):
    body = render_template(
        "console/tenants.html",
        page=tenant_admin.tenants_page(current_user, request.args),
        error=error,
        form=form or {},
    )
    return Response(body, error.status if error else 200)


@bp.get("/console/tenants")
@require_admin_page
def console_tenants():
    return _render_tenants()


@bp.post("/console/tenants")
@require_operator_page
def console_create_tenant():
    slug, name = request.form.get("slug", "").strip(), request.form.get("name", "")
    try:
        tenant = accounts.create_tenant(slug, name, actor=current_user.actor)
    except DomainError as exc:
        return _render_tenants(exc, {"slug": slug, "name": name})
    flash(f"Created tenant {tenant.slug}.", "ok")
    return redirect(url_for("auth.console_tenants"), 303)


@bp.get("/console/tenants/<slug>")
@require_admin_page
def console_tenant(slug: str):
    return render_template(
        "console/tenant.html",
        tenant=tenant_admin.tenant_of(current_user, slug),
        plugins=tenant_admin.plugins(current_user, slug),
        policy_names=UNINSTALL_POLICIES,
    )


@bp.post("/console/tenants/<slug>/plugins/<plugin_id>/<any(install, uninstall):verb>")
@require_admin_page
def console_tenant_install(slug: str, plugin_id: str, verb: str):
    """A tenant's admin (or an operator) installs or uninstalls an available plugin there."""
    back = url_for("auth.console_tenant", slug=slug)
    tenant_admin.tenant_of(current_user, slug)
    if verb == "uninstall":
        question = (
            f"Really uninstall {plugin_id} from {slug}? Its menus and views leave the tenant; "
            "its data stays."
        )
        if page := confirm.ask(question, button="Uninstall", cancel=back):
            return page
    changed = tenant_admin.set_installed(current_user, plugin_id, slug, verb == "install")
    done = "installed in" if verb == "install" else "uninstalled from"
    flash(f"{plugin_id} {'is now' if changed else 'was already'} {done} {slug}.", "ok")
    return redirect(back, 303)


@bp.post("/console/tenants/<slug>/plugins/<plugin_id>/uninstall-policy")
@require_admin_page
def console_tenant_policy(slug: str, plugin_id: str):
    policy = request.form.get("policy", "")
    back = url_for("auth.console_tenant", slug=slug)
    tenant_admin.tenant_of(current_user, slug)
    if policy == "purge":
        question = f"Really purge {plugin_id}'s data in {slug} when it is removed?"
        if page := confirm.ask(question, button="Set purge", cancel=back):
            return page
    try:
        tenant_admin.set_policy(current_user, plugin_id, slug, policy)
    except NotFound:
        raise  # a plugin that is not in the tenant is not there for its admin
    except DomainError as exc:
        flash(exc.detail, "error")
    else:
        flash(f"Uninstall policy of {plugin_id} in {slug}: {policy}.", "ok")
    return redirect(back, 303)
