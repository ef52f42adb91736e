"""Identity over HTTP: login, logout and password pages, user tokens, the JWKS, and the console's
people pages."""

import logging

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
from extframework.config import JWKS_MAX_AGE_S
from extframework.errors import DomainError
from extframework.http import body_fields, json_body, string_field
from extframework.models import ROLES
from extframework.services import accounts, sessions, tokens, urls

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


# --- console: users and tenants -----------------------------------------------------------


def _render_users(error: DomainError | None = None, form: dict | None = None):
    body = render_template(
        "console/users.html",
        users=accounts.list_users(),
        tenants=accounts.list_tenants(),
        roles=ROLES,
        error=error,
        form=form or {},
    )
    return Response(body, error.status if error else 200)


@bp.get("/console/users")
@require_operator_page
def console_users():
    return _render_users()


@bp.post("/console/users")
@require_operator_page
def console_create_user():
    form = request.form
    try:
        user = accounts.create_user(
            form.get("email", ""),
            form.get("password", ""),
            role=form.get("role", ""),
            operator=form.get("operator") == "on",
            tenant=form.get("tenant", ""),
            name=form.get("name", ""),
            actor=current_user.actor,
        )
    except DomainError as exc:
        kept = {k: form.get(k, "") for k in ("email", "name", "role", "tenant", "operator")}
        return _render_users(exc, kept)
    flash(f"Created user {user.email}.", "ok")
    return redirect(url_for("auth.console_users"), 303)


@bp.post("/console/users/<int:user_id>/role")
@require_operator_page
def console_set_role(user_id: int):
    try:
        user = accounts.set_role(
            user_id,
            request.form.get("role", ""),
            operator=request.form.get("operator") == "on",
            actor=current_user.actor,
        )
    except DomainError as exc:
        return _render_users(exc)
    if user.id == current_user.id:  # one's own role change ends one's sessions: keep this one
        _start_session(user.id, sessions.current_generation(user.id))
    flash(f"{user.email} is now {user.role}{', operator' if user.is_operator else ''}.", "ok")
    return redirect(url_for("auth.console_users"), 303)


@bp.post("/console/users/<int:user_id>/<any(deactivate, reactivate):verb>")
@require_operator_page
def console_set_active(user_id: int, verb: str):
    try:
        user = accounts.set_active(user_id, verb == "reactivate", actor=current_user.actor)
    except DomainError as exc:
        return _render_users(exc)
    flash(f"{user.email} is {'active' if user.is_active else 'deactivated'}.", "ok")
    return redirect(url_for("auth.console_users"), 303)


@bp.post("/console/users/<int:user_id>/password")
@require_operator_page
def console_set_password(user_id: int):
    """An operator's password reset: the user's sessions and user JWTs end."""
    try:
        user = sessions.set_password(
            user_id, request.form.get("password", ""), actor=current_user.actor
        )
    except DomainError as exc:
        return _render_users(exc)
    flash(f"Set a new password for {user.email}; their sessions are logged out.", "ok")
    return redirect(url_for("auth.console_users"), 303)


def _render_tenants(error: DomainError | None = None, form: dict | None = None):
    body = render_template(
        "console/tenants.html", tenants=accounts.list_tenants(), error=error, form=form or {}
    )
    return Response(body, error.status if error else 200)


@bp.get("/console/tenants")
@require_operator_page
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
