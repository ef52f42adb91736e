"""The window manager: the layout every page shares."""

from flask import Blueprint, jsonify, render_template
from flask_login import login_required

from extframework.db import database

bp = Blueprint("shell", __name__)


@bp.get("/")
@login_required
def home():
    return render_template("home.html")


@bp.get("/healthz")
def healthz():
    database.execute_sql("SELECT 1").fetchone()
    return jsonify({"status": "ok"})


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
        "frame-ancestors 'none'",
    ]
)
