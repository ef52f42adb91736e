"""Identity over HTTP: login pages, user tokens, the JWKS, and the console's people pages."""

import logging

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
from flask_login import current_user, login_user, logout_user

from extframework.authn import (
    Identity,
    api_user,
    keystore,
    require_api_user,
    require_operator_page,
)
from extframework.errors import BadRequest, DomainError
from extframework.http import json_body
from extframework.models import ROLES
from extframework.services import accounts, tokens

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)


def _authenticate(email: str, password: str):
    config = current_app.config
    limits = accounts.LoginLimits(
        max_failures=int(config["LOGIN_MAX_FAILURES"]),
        account_max_failures=int(config["LOGIN_ACCOUNT_MAX_FAILURES"]),
        window_s=int(config["LOGIN_WINDOW_S"]),
        known_address_days=int(config["LOGIN_KNOWN_ADDRESS_DAYS"]),
        address_slow_after=int(config["LOGIN_ADDRESS_SLOW_AFTER"]),
        address_delay_s=float(config["LOGIN_ADDRESS_DELAY_S"]),
    )
    return accounts.authenticate(email, password, request.remote_addr or "unknown", limits=limits)


def _safe_next(target: str | None) -> str:
    """Only follow a `next` that stays on this site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("shell.home")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error, status, headers = None, 200, {}
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "")
        try:
            user = _authenticate(email, request.form.get("password", ""))
        except DomainError as exc:
            error, status, headers = exc.detail, exc.status, exc.headers
        else:
            login_user(Identity.load(user.id))
            log.info("login: user %s", user.id)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, email=email), status, headers


@bp.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("auth.login"))


@bp.get("/.well-known/jwks.json")
def jwks():
    response = jsonify(keystore().jwks())
    response.cache_control.public = True
    response.cache_control.max_age = 60
    return response


@bp.post("/api/auth/token")
def issue_token():
    body = json_body()
    missing = [f for f in ("email", "password") if not isinstance(body.get(f), str)]
    if missing:
        raise BadRequest(
            "Send a JSON object with string fields 'email' and 'password'.",
            errors=[{"field": f, "message": "required string"} for f in missing],
        )
    user = _authenticate(body["email"], body["password"])
    ttl = int(current_app.config["USER_JWT_TTL_S"])
    token = tokens.mint_user_jwt(
        keystore(),
        issuer=current_app.config["BASE_URL"],
        user_id=str(user.id),
        email=user.email,
        tenant=user.tenant.slug,
        role=user.role,
        ttl_s=ttl,
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
