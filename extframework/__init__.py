"""The extension framework core: ``create_app()`` wires config, db, services and blueprints."""

import logging
import os
from pathlib import Path

import extframework.iri_syntax  # noqa: F401  (first: before anything imports jsonschema)

# isort: split
from flask import Flask
from peewee import OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix

from extframework import authn, backup_cli, caching, cli, db, db_cli, observability, registry_cli
from extframework.blueprints import auth, contract_check, registry, shell, storage
from extframework.config import load_config
from extframework.errors import register_error_handlers
from extframework.http import RowIdConverter
from extframework.services import health
from extframework.services.signing_keys import KeyStore, Sealer

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=instance_path
        or os.environ.get("EXTFW_INSTANCE_PATH")
        or str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    load_config(app, test_config)
    configure_proxies(app)
    configure_logging(app)
    db.init_app(app)
    configure_keys(app)
    authn.init_app(app)
    register_blueprints(app)
    register_error_handlers(app)
    observability.init_app(app)
    caching.init_app(app)
    cli.init_app(app)
    registry_cli.init_app(app)
    backup_cli.init_app(app)
    db_cli.init_app(app)
    configure_health(app)
    return app


def configure_proxies(app: Flask) -> None:
    """Trust ``PROXY_FIX`` hops of forwarded headers; the throttle and audit see real clients."""
    hops = app.config["PROXY_FIX"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)


def configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=app.config.get("LOG_LEVEL", "INFO"),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def configure_keys(app: Flask) -> None:
    max_ttl = max(int(app.config["REQUEST_JWT_TTL_S"]), int(app.config["USER_JWT_TTL_S"]))
    sealer = Sealer(app.config["SECRET_KEY"], tuple(app.config["SECRET_KEY_FALLBACKS"]))
    store = KeyStore(
        sealer,
        app.config["JWT_ALGORITHM"],
        max_ttl,
        legacy_folder=Path(app.instance_path) / "keys",
    )
    try:
        store.ensure_key()
    except OperationalError as exc:  # an unreachable database: /healthz and requests say so
        log.warning("signing keys not checked at start: %s", exc)
    app.extensions["extframework.keys"] = store


def configure_health(app: Flask) -> None:
    if app.config["HEALTH_MONITOR"]:
        health.start_monitor(app)


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["int"] = RowIdConverter
    for module in (auth, shell, registry, contract_check, storage):
        app.register_blueprint(module.bp)
