"""The window manager: the layout every page shares, the plugin menu, and the plugin proxy."""

from dataclasses import asdict

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
)
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf

from extframework import observability
from extframework.authn import keystore
from extframework.db import schema_problem
from extframework.errors import BadRequest, Unavailable
from extframework.services import fragments, health, menu, menu_notices, proxy

bp = Blueprint("shell", __name__)

PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@bp.get("/")
@login_required
def home():
    return render_template("home.html")


@bp.get("/healthz")
def healthz():
    problem = schema_problem()
    if problem is None and (stopped := health.monitor_problem(current_app)):
        problem = "health-monitor-stopped", stopped
    if problem:
        raise Unavailable(problem[1], kind=problem[0], headers={"Retry-After": "30"})
    return jsonify({"status": "ok"})


@bp.app_context_processor
def menu_context() -> dict:
    user = current_user._get_current_object()  # one proxy lookup, not one per attribute
    if not user.is_authenticated:
        return {"menu_items": [], "menu_alert": ""}
    menus = menu.menu_for(user.role, user.tenant)
    notices = menu_notices.notices_for(user.role, user.tenant)
    return {
        "menu_items": menu_notices.in_menu_order(menus, notices),
        "menu_alert": menu_notices.alert(notices),
    }


@bp.get("/shell/live")
@login_required
def live():
    """The person's menu and notices as they are now, for static/live.js (issue 17).

    ``order`` lists every plugin of either kind in menu order, so a notice goes where the
    plugin's entries were.
    """
    user = current_user._get_current_object()
    menus = menu.menu_for(user.role, user.tenant)
    notices = menu_notices.notices_for(user.role, user.tenant)
    body = {
        "menu": [asdict(m) for m in menus],
        "notices": [asdict(n) for n in notices],
        "order": [item.plugin_id for item in menu_notices.in_menu_order(menus, notices)],
        "alert": menu_notices.alert(notices),
    }
    return jsonify(body), 200, {"Cache-Control": "no-store"}


def _caller(user) -> proxy.Caller:
    return proxy.Caller(
        user_id=user.id,
        name=user.display_name,
        email=user.email,
        tenant=user.tenant,
        role=user.role,
        request_id=observability.request_id(),
    )


def _effective_method() -> str:
    """HTML forms send only GET and POST: a POST's ``_method`` field names the declared method."""
    override = request.form.get(fragments.METHOD_FIELD, "") if request.method == "POST" else ""
    override = override.strip().upper()
    if not override or override == "POST":
        return request.method
    if override not in fragments.OVERRIDABLE_METHODS:
        raise BadRequest(f"_method must be one of {', '.join(fragments.OVERRIDABLE_METHODS)}.")
    return override


def _resolve(plugin_id: str, subpath: str, method: str, user) -> proxy.Target:
    return proxy.resolve(plugin_id, method, "/" + subpath, role=user.role, tenant=user.tenant)


def _forward(target: proxy.Target, method: str, user) -> proxy.Outcome:
    form = []
    if method != "GET":  # a GET form travels in the query string; don't parse an empty body
        hidden = (fragments.CSRF_FIELD, fragments.METHOD_FIELD)
        form = [(k, v) for k, v in request.form.items(multi=True) if k not in hidden]
    config = current_app.config
    return proxy.forward(
        target,
        _caller(user),
        method=method,
        query_string=request.query_string.decode("utf-8", "replace"),
        form=form,
        store=keystore(),
        issuer=config["BASE_URL"],
        jwt_ttl_s=int(config["REQUEST_JWT_TTL_S"]),
        timeout_s=float(config["PROXY_TIMEOUT_S"]),
        max_concurrent=int(config["PROXY_MAX_CONCURRENT_PER_PLUGIN"]),
    )


@bp.route("/plugin-proxy/<plugin_id>", defaults={"subpath": ""}, methods=PROXY_METHODS)
@bp.route("/plugin-proxy/<plugin_id>/", defaults={"subpath": ""}, methods=PROXY_METHODS)
@bp.route("/plugin-proxy/<plugin_id>/<path:subpath>", methods=PROXY_METHODS)
@login_required
def plugin_proxy(plugin_id: str, subpath: str):
    method = _effective_method()
    user = current_user._get_current_object()
    target = _resolve(plugin_id, subpath, method, user)
    page = _page(target, method)
    if target.route.mode == "iframe" and method == "GET":
        frame_src = f"/plugin-frame/{plugin_id}{target.path}"
        if request.query_string:
            frame_src += "?" + request.query_string.decode("utf-8", "replace")
        return render_template("plugin_view.html", frame_src=frame_src, **page)
    outcome = _forward(target, method, user)
    return _render(outcome, target, page, fragments.proxy_prefix(plugin_id))


@bp.get("/plugin-frame/<plugin_id>/", defaults={"subpath": ""})
@bp.get("/plugin-frame/<plugin_id>/<path:subpath>")
@login_required
def plugin_frame(plugin_id: str, subpath: str):
    """Serve an ``iframe`` view as its own sandboxed document (opaque origin, no script)."""
    user = current_user._get_current_object()
    target = _resolve(plugin_id, subpath, "GET", user)
    page = _page(target, "GET")
    response = _render(
        _forward(target, "GET", user),
        target,
        page,
        f"/plugin-frame/{plugin_id}",
        "plugin_frame.html",
    )
    response.headers["Content-Security-Policy"] = FRAME_CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


def _page(target: proxy.Target, method: str) -> dict:
    return {
        "plugin": target.plugin,
        "route": target.route,
        "method": method,
        "active_plugin": target.plugin.plugin_id,
        "active_menu": target.route.menu_id,
    }


def _render(
    outcome: proxy.Outcome,
    target: proxy.Target,
    page: dict,
    prefix: str,
    template: str = "plugin_view.html",
) -> Response:
    if isinstance(outcome, proxy.Redirect):
        location = outcome.location
        if prefix != fragments.proxy_prefix(target.plugin.plugin_id):
            location = prefix + location.removeprefix(
                fragments.proxy_prefix(target.plugin.plugin_id)
            )
        return redirect(location, 303)
    if isinstance(outcome, proxy.Fragment):
        outcome = proxy.check_markup(target, page["method"], outcome)
    if isinstance(outcome, proxy.Fault):
        body = render_template(template, fault=outcome, **page)
        return Response(body, outcome.status, outcome.headers)
    html = fragments.process(
        outcome.html,
        plugin_id=target.plugin.plugin_id,
        current_path=target.path,
        base_url=target.plugin.base_url,
        csrf_token=generate_csrf(),
        prefix=prefix,
    )
    status = outcome.status if outcome.status >= 400 else 200
    return Response(render_template(template, fragment=html, **page), status)


@bp.after_app_request
def security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-src 'self'",
        "frame-ancestors 'none'",
    ]
)
# A framed view runs in an opaque origin (`sandbox` without allow-same-origin) and no script.
FRAME_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "sandbox allow-forms",
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)
