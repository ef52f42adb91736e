"""The contract checker over HTTP (issue 16): the update's dry run and the core's probes."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Blueprint, current_app, jsonify

from extframework.authn import api_user, bearer_token, keystore, require_plugin
from extframework.errors import Forbidden, TooManyRequests
from extframework.http import json_body
from extframework.models import Plugin
from extframework.services import contract_check
from extframework.services.manifest import base_url as manifest_base_url
from extframework.services.secrets import PLUGIN_TOKEN_PREFIX

bp = Blueprint("contract_check", __name__)

# The (endpoint, plugin) pairs running in this process: one check of each kind of a plugin at a
# time, so a token (or a client retrying) cannot hold every server thread with checks of
# hanging views or dry runs probing a hanging /health.
_running: set[tuple[str, str]] = set()
_running_lock = threading.Lock()


@contextmanager
def _one_at_a_time(endpoint: str, plugin_id: str, bound_s: float) -> Iterator[None]:
    with _running_lock:
        if (endpoint, plugin_id) in _running:
            raise TooManyRequests(
                f"A {endpoint} of {plugin_id!r} is already running on this server; "
                "send the next one when it has answered.",
                headers={"Retry-After": str(max(1, round(bound_s)))},
                kind="too-many-requests",
            )
        _running.add((endpoint, plugin_id))
    try:
        yield
    finally:
        with _running_lock:
            _running.discard((endpoint, plugin_id))


def _plugin_or_operator(plugin_id: str) -> tuple[Plugin | None, bool]:
    """Return the plugin of that id (None if never registered) and whether the caller is it.

    The plugin's own token, or an operator's user JWT; another plugin's token is 403.
    """
    token = bearer_token()
    if token is not None and token.startswith(PLUGIN_TOKEN_PREFIX):
        caller = require_plugin()
        if caller.plugin_id != plugin_id:
            raise Forbidden("A plugin token checks only its own plugin's manifests.")
        return caller, True
    if not api_user().is_operator:
        raise Forbidden("Only an operator, or the plugin itself with its token, may check.")
    return Plugin.get_or_none(Plugin.plugin_id == plugin_id), False


@bp.post("/api/registry/plugins/<plugin_id>/manifest-check")
def manifest_check(plugin_id: str):
    """What PUT /api/registry/plugins/{id} would answer for this manifest; nothing is applied."""
    plugin, _ = _plugin_or_operator(plugin_id)
    manifest = json_body()
    config = current_app.config
    with _one_at_a_time("manifest-check", plugin_id, float(config["HEALTH_TIMEOUT_S"])):
        verdict = contract_check.preview_update(plugin_id, manifest, plugin=plugin, config=config)
    return jsonify(verdict)


@bp.post("/api/registry/plugins/<plugin_id>/contract-check")
def contract_check_plugin(plugin_id: str):
    """Run the core's probes on the plugin this manifest describes (docs/registry.md)."""
    plugin, own = _plugin_or_operator(plugin_id)
    manifest = json_body()
    # No string base_url: the manifest is invalid, judged in the answer, and nothing is called.
    if own and _base_url(manifest) not in (None, plugin.base_url):
        # Else any token holder could make the core send signed request JWTs anywhere.
        raise Forbidden(
            f"With a plugin token the manifest's base_url must be the registered one "
            f"({plugin.base_url}); an operator may check any base_url."
        )
    budget_s = float(current_app.config["CONTRACT_CHECK_TIMEOUT_S"])
    with _one_at_a_time("contract-check", plugin_id, budget_s):
        checks = contract_check.check(
            manifest,
            plugin=plugin,
            store=keystore(),
            config=current_app.config,
            plugin_id=plugin_id,
        )
    return jsonify({"plugin_id": plugin_id, "ok": all(c["ok"] for c in checks), "checks": checks})


def _base_url(manifest: object) -> str | None:
    url = manifest.get("base_url") if isinstance(manifest, dict) else None
    return manifest_base_url({"base_url": url}) if isinstance(url, str) else None
