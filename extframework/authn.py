"""Who is calling: browser sessions, user JWTs and plugin tokens, kept strictly apart (SPEC §4)."""

from dataclasses import dataclass
from functools import wraps

from flask import Flask, current_app, g, redirect, request, url_for
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

from extframework.errors import Forbidden, Unauthorized
from extframework.models import Plugin
from extframework.services import accounts, migrations, plugin_tokens, tokens
from extframework.services.secrets import MIGRATION_TOKEN_PREFIX, PLUGIN_TOKEN_PREFIX, hash_secret

login_manager = LoginManager()
csrf = CSRFProtect()

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ENDED_TOKEN = (
    "The token's session has ended (its user logged out, changed password or role, or was "
    "deactivated or removed): get a new token from POST /api/auth/token."
)
ENDED_TOKEN_CHALLENGE = (
    'Bearer error="invalid_token", error_description="the session of this token has ended"'
)


@dataclass
class Identity:
    """The person behind a request, as flask-login and the services see them."""

    id: int
    email: str
    name: str
    role: str
    tenant: str
    is_operator: bool
    generation: int = 0  # the session generation this session or token was issued at
    via: str = "session"  # session | jwt

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        """Say what flask-login keeps in the session: the id and the session generation."""
        return f"{self.id}:{self.generation}"

    @property
    def actor(self) -> str:
        """How audit records and transitions name this person."""
        return accounts.user_actor(self.email)

    @property
    def display_name(self) -> str:
        return self.name or self.email.split("@")[0]

    @classmethod
    def load(cls, user_id: int, generation: int, via: str = "session") -> "Identity | None":
        """Return the active user with this id, or None (unknown, disabled, or ended sessions).

        ``generation`` is the one the session or token was issued at; once the user's has moved
        on (logout, password, role, deactivation), that session or token is no one's.
        """
        row = accounts.active_user(user_id, generation)
        return cls(*row, generation=generation, via=via) if row else None


@login_manager.user_loader
def _load_user(session_id: str) -> Identity | None:
    # "<id>:<generation>"; a bare "<id>" is a session from before generations: generation 0.
    user_id, _, generation = session_id.partition(":")
    if not user_id.isdigit() or not (generation or "0").isdigit():
        return None
    return Identity.load(int(user_id), int(generation or "0"))


def init_app(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid for the session's lifetime
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    csrf.init_app(app)

    @app.before_request
    def _protect_pages() -> None:
        # API calls authenticate with bearer tokens; pages and session-authenticated API
        # writes are checked for the CSRF token (the latter in api_user()).
        # A method the route does not declare is 405 (with Allow) before any CSRF check.
        if request.routing_exception is not None:
            return
        if request.method not in SAFE_METHODS and not request.path.startswith("/api/"):
            check_csrf()


def check_csrf() -> None:
    """Refuse a state-changing request without the session's CSRF token (form field or header)."""
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


def keystore() -> tokens.KeyStore:
    return current_app.extensions["extframework.keys"]


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def api_user() -> Identity:
    """Return the person calling an API endpoint, by user JWT or browser session.

    A bearer token must be a user JWT: a plugin token or a request JWT is refused with 401.
    """
    if "api_user" in g:
        return g.api_user
    token = bearer_token()
    if token is not None:
        claims = tokens.verify_user_jwt(keystore(), token, issuer=current_app.config["BASE_URL"])
        identity = Identity.load(int(claims["sub"]), claims[tokens.GENERATION_CLAIM], via="jwt")
        if identity is None:
            raise Unauthorized(ENDED_TOKEN, headers={"WWW-Authenticate": ENDED_TOKEN_CHALLENGE})
    elif current_user.is_authenticated:
        if request.method not in SAFE_METHODS:
            check_csrf()
        identity = current_user._get_current_object()
    else:
        raise Unauthorized(
            "Log in, or send 'Authorization: Bearer <user token>' from POST /api/auth/token."
        )
    g.api_user = identity
    return identity


def require_api_user(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        api_user()
        return view(*args, **kwargs)

    return wrapper


def require_api_operator(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not api_user().is_operator:
            raise Forbidden("Only an operator may do this.")
        return view(*args, **kwargs)

    return wrapper


def require_operator_page(view):
    """Guard a console page: log in first, then be an operator."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        if not current_user.is_operator:
            raise Forbidden("The console is for operators.")
        return view(*args, **kwargs)

    return wrapper


def _plugin_token_hash(token: str | None = None) -> str:
    token = token or bearer_token()
    if token is None:
        raise Unauthorized("Send the plugin token as 'Authorization: Bearer <plugin token>'.")
    if not token.startswith(PLUGIN_TOKEN_PREFIX):
        raise Unauthorized("This endpoint takes a plugin token, not a user or request JWT.")
    return hash_secret(token)


def _known(
    plugin: Plugin | plugin_tokens.ServingPlugin | None,
) -> Plugin | plugin_tokens.ServingPlugin:
    if plugin is None:
        raise Unauthorized(
            "The plugin token is unknown, expired (its rotation's grace ended), or revoked. "
            "Use the plugin's current token; an operator can rotate it.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return plugin


def require_plugin() -> Plugin:
    """Return the whole record of the plugin whose live token is the bearer; JWTs get 401."""
    return Plugin.get_by_id(_known(plugin_tokens.serving_plugin(_plugin_token_hash())).id)


def storage_caller() -> tuple[Plugin | plugin_tokens.ServingPlugin, bool]:
    """Return the plugin calling the storage API and whether it calls in its migration's context.

    A plugin token gives ``(plugin, False)``. A migration credential (``efmc_…``) gives
    ``(plugin, True)`` while its attempt runs, it has not expired and the plugin is
    ``migrating``; anything else is 401.
    """
    token = bearer_token()
    if token is not None and token.startswith(MIGRATION_TOKEN_PREFIX):
        plugin = migrations.plugin_for_credential(token)
        if plugin is None:
            raise Unauthorized(
                "The migration credential is unknown, expired, or revoked (its attempt ended)."
            )
        g.storage_plugin_id = plugin.plugin_id
        return plugin, True
    plugin = _known(plugin_tokens.serving_plugin(_plugin_token_hash(token)))
    g.storage_plugin_id = plugin.plugin_id  # the storage-operation metrics' label
    return plugin, False
