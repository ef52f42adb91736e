"""Operator commands for the package manager: ``flask --app app plugins|enrolment-keys ...``.

Commands that reveal a secret print it as their last line, so a script can take ``tail -n1``.
"""

import json
from pathlib import Path
from urllib.parse import quote

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from extframework import scaffold
from extframework.cli import CLI_ACTOR, refusals_as_errors
from extframework.models import Plugin, iso_utc
from extframework.services import (
    archives,
    catalog,
    contract_check,
    enrolment,
    migrations,
    pending_updates,
    plugin_admin,
    registry,
    uninstall,
)

plugins_cli = AppGroup("plugins", help="Register plugins and drive their lifecycle.")
keys_cli = AppGroup("enrolment-keys", help="Create and revoke plugin enrolment keys.")
migration_cli = AppGroup("migration", help="Follow and retry schema migrations.")
plugins_cli.add_command(migration_cli)


def init_app(app: Flask) -> None:
    for group in (plugins_cli, keys_cli):
        app.cli.add_command(group)


@keys_cli.command("create")
@click.option("--uses", type=click.IntRange(min=1), default=None, help="Default: unlimited.")
@click.option("--expires", default=None, help="Lifetime such as 30m, 1h, 2d (default: never).")
@click.option("--label", default="", help="What the key is for.")
@click.option(
    "--plugin",
    "plugin_id",
    default=None,
    help="Register only this plugin_id (needed to register a removed plugin whose data remains).",
)
@refusals_as_errors
def create_key(uses: int | None, expires: str | None, label: str, plugin_id: str | None) -> None:
    """Create an enrolment key and print it (last line); it is shown only this once."""
    lifetime = enrolment.parse_duration(expires) if expires else None
    key, secret = enrolment.create_key(
        actor=CLI_ACTOR, uses=uses, expires_in=lifetime, label=label, plugin_id=plugin_id
    )
    summary = enrolment.key_summary(key)
    scope = f" for plugin {key.plugin_id}" if key.plugin_id else ""
    click.echo(
        f"Created enrolment key {key.id}{scope} "
        f"(uses: {uses or 'unlimited'}, expires: {summary['expires_at'] or 'never'})."
    )
    click.echo(secret)


@keys_cli.command("list")
@refusals_as_errors
def list_keys() -> None:
    """List enrolment keys (never the keys themselves)."""
    for key in map(enrolment.key_summary, enrolment.list_keys()):
        uses = "unlimited" if key["uses_left"] is None else key["uses_left"]
        click.echo(
            f"{key['id']}\t{key['status']}\tuses left: {uses}\t"
            f"expires: {key['expires_at'] or 'never'}\tplugin: {key['plugin_id'] or 'any'}\t"
            f"{key['label']}"
        )


@keys_cli.command("revoke")
@click.argument("key_id", type=int)
@refusals_as_errors
def revoke_key(key_id: int) -> None:
    """Revoke an enrolment key; plugins it enrolled keep working."""
    enrolment.revoke_key(key_id, actor=CLI_ACTOR)
    click.echo(f"Revoked enrolment key {key_id}.")


@plugins_cli.command("register")
@click.argument("manifest_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@refusals_as_errors
def register(manifest_file: Path) -> None:
    """Register a plugin from a manifest file and print its token (last line), shown once."""
    try:
        manifest = json.loads(manifest_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{manifest_file} is not valid JSON: {exc}") from None
    probe = registry.health_probe(float(current_app.config["HEALTH_TIMEOUT_S"]))
    plugin, token = registry.register(manifest, actor=CLI_ACTOR, probe=probe)
    click.echo(f"Registered {plugin.plugin_id} {plugin.version} ({plugin.state}).")
    click.echo(token)


@plugins_cli.command("new")
@click.argument("plugin_id", metavar="NAME")
@click.option("--lang", type=click.Choice(scaffold.LANGUAGES), required=True)
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Default: ./NAME.")
@click.option("--name", "title", default=None, help="Display name (default: from NAME).")
def new_plugin(plugin_id: str, lang: str, directory: Path | None, title: str | None) -> None:
    """Write a working plugin (manifest, server on the SDK, README, test) into a new folder."""
    target = directory or Path(plugin_id)
    try:
        files = scaffold.new_plugin(plugin_id, lang, target, name=title)
    except scaffold.ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {plugin_id} ({lang}) to {target}: {', '.join(f.name for f in files)}.")
    click.echo(f"Next: read {target / 'README.md'}.")


@plugins_cli.command("list")
@refusals_as_errors
def list_plugins() -> None:
    """List plugins with their version, state and last health check."""
    for plugin in catalog.list_plugins():
        last = catalog.last_health(plugin)
        health = "not checked" if last is None else ("ok" if last["ok"] else "failing")
        click.echo(
            f"{plugin.plugin_id}\t{plugin.version}\t{plugin.state}\t{health}\t{plugin.base_url}"
        )


@plugins_cli.command("show")
@click.argument("plugin_id")
@refusals_as_errors
def show(plugin_id: str) -> None:
    """Print a plugin's registry record as JSON."""
    summary = catalog.plugin_summary(catalog.get_plugin(plugin_id))
    click.echo(json.dumps(summary, indent=2))


def _state_command(verb: str, name: str, help_text: str):
    @plugins_cli.command(name, help=help_text)
    @click.argument("plugin_id")
    @click.option("--reason", default="", help="Recorded with the transition.")
    @refusals_as_errors
    def command(plugin_id: str, reason: str) -> None:
        plugin = catalog.get_plugin(plugin_id)
        plugin_admin.change_state(
            plugin,
            verb,
            actor=CLI_ACTOR,
            reason=reason,
            archive_root=archives.archive_root(current_app),
        )
        click.echo(f"{plugin_id} is now {plugin.state}.")

    command.__name__ = f"{name}_command"
    return command


_state_command("disable", "disable", "Disable a plugin: menus hidden, storage read-only.")
_state_command("enable", "enable", "Re-enable a disabled plugin.")


@plugins_cli.command("remove")
@click.argument("plugin_id")
@click.option("--reason", default="", help="Recorded with the transition.")
@click.option("--confirm", default=None, help="Repeat PLUGIN_ID when a tenant's policy is purge.")
@refusals_as_errors
def remove(plugin_id: str, reason: str, confirm: str | None) -> None:
    """Deregister a disabled plugin, revoke its token and apply each tenant's uninstall policy."""
    plugin = catalog.get_plugin(plugin_id)
    outcome = plugin_admin.change_state(
        plugin,
        "deregister",
        actor=CLI_ACTOR,
        reason=reason,
        confirm=confirm,
        archive_root=archives.archive_root(current_app),
    )
    click.echo(f"{plugin_id} is now {plugin.state}.")
    for tenant, entry in sorted((outcome or {}).get("tenants", {}).items()):
        where = f" -> {entry['archive']}" if entry.get("archive") else ""
        click.echo(f"  {tenant}: {entry['policy']} ({entry['documents']} documents){where}")


@plugins_cli.command("uninstall-policy")
@click.argument("plugin_id")
@click.argument("tenant", required=False)
@click.argument("policy", required=False, type=click.Choice(uninstall.UNINSTALL_POLICIES))
@refusals_as_errors
def uninstall_policy(plugin_id: str, tenant: str | None, policy: str | None) -> None:
    """Show each tenant's uninstall policy, or set TENANT's to POLICY (retain|archive|purge)."""
    plugin = catalog.get_plugin(plugin_id)
    if tenant is not None:
        if policy is None:
            raise click.UsageError("Give the POLICY to set for TENANT.")
        uninstall.set_policy(plugin, tenant, policy, actor=CLI_ACTOR)
    for entry in uninstall.policies(plugin):
        click.echo(f"{entry['tenant']}\t{entry['policy']}\t{entry['documents']} documents")


@plugins_cli.command("tenants")
@click.argument("plugin_id")
@click.argument("tenants", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Open the plugin to every tenant.")
@refusals_as_errors
def plugin_tenants(plugin_id: str, tenants: tuple[str, ...], every: bool) -> None:
    """Show where a plugin is available, or make it available to TENANTS only, or --all."""
    plugin = catalog.get_plugin(plugin_id)
    if every and tenants:
        raise click.UsageError("Name TENANTS or give --all, not both.")
    if every or tenants:
        plugin_admin.set_tenants(plugin, None if every else list(tenants), actor=CLI_ACTOR)
    available = catalog.tenants(catalog.get_plugin(plugin_id))
    click.echo("every tenant" if available is None else " ".join(available) or "no tenant")


@plugins_cli.command("archives")
@click.argument("plugin_id", required=False)
@refusals_as_errors
def list_archives(plugin_id: str | None) -> None:
    """List the archives written at deregistration (id, plugin, tenant, documents, file)."""
    for row in archives.list_archives(plugin_id):
        restored = f"restored {row['restored_at']}" if row["restored_at"] else "not restored"
        click.echo(
            f"{row['id']}\t{row['plugin_id']}\t{row['tenant']}\t{row['documents']}\t"
            f"{restored}\t{row['path']}"
        )


@plugins_cli.command("restore")
@click.argument("archive")
@refusals_as_errors
def restore(archive: str) -> None:
    """Verify an archive's checksum and bring its documents back (ARCHIVE: id or file path)."""
    result = archives.restore(archive, actor=CLI_ACTOR, root=archives.archive_root(current_app))
    click.echo(
        f"Restored {result['documents']} document(s) of {result['plugin_id']} in tenant "
        f"{result['tenant']}."
    )


@plugins_cli.command("diff")
@click.argument("plugin_id")
@click.argument("from_version")
@click.argument("to_version")
@refusals_as_errors
def diff(plugin_id: str, from_version: str, to_version: str) -> None:
    """Print the schema diff between two recorded versions of a plugin as JSON."""
    result = catalog.version_diff(catalog.get_plugin(plugin_id), from_version, to_version)
    click.echo(json.dumps(result, indent=2))


def _echo_status(status: dict) -> None:
    run = status["migration"]
    click.echo(f"{status['plugin_id']} is {status['state']} at version {status['version']}.")
    if run is None:
        click.echo("No migration recorded.")
        return
    state = "interrupted" if run["interrupted"] else run["state"]
    click.echo(
        f"Migration {run['from_version']} -> {run['to_version']}: {state} "
        f"after {run['attempts']} attempt(s)."
    )
    if run["last_error"]:
        click.echo(f"Last error: {run['last_error']}")
    for doc in run["report"].get("invalid", []):
        why = "; ".join(f"{e['pointer'] or '/'} {e['message']}" for e in doc["errors"])
        click.echo(f"  invalid: {doc['tenant']}/{doc['collection']}/{doc['id']}: {why}")


@migration_cli.command("status")
@click.argument("plugin_id")
@refusals_as_errors
def migration_status(plugin_id: str) -> None:
    """Show a plugin's latest migration: outcome, attempts, error, invalid documents."""
    _echo_status(migrations.status(catalog.get_plugin(plugin_id)))


@migration_cli.command("retry")
@click.argument("plugin_id")
@refusals_as_errors
def migration_retry(plugin_id: str) -> None:
    """Run another attempt of a migrating plugin's migration, here in the foreground."""
    plugin = catalog.get_plugin(plugin_id)
    migrations.retry(
        plugin, actor=CLI_ACTOR, app=current_app._get_current_object(), background=False
    )
    status = migrations.status(catalog.get_plugin(plugin_id))
    _echo_status(status)
    if status["state"] == "migrating":
        raise click.ClickException("The migration did not complete; the plugin stays migrating.")


@plugins_cli.command("rotate-token")
@click.argument("plugin_id")
@click.option(
    "--revoke-now",
    is_flag=True,
    help="The old token stops working at once (a leaked token) instead of after the grace.",
)
@refusals_as_errors
def rotate_token(plugin_id: str, revoke_now: bool) -> None:
    """Give a plugin a new token and print it (last line); the old one works for the grace."""
    plugin = catalog.get_plugin(plugin_id)
    token, old_expires = plugin_admin.rotate_token(
        plugin,
        actor=CLI_ACTOR,
        grace_s=float(current_app.config["TOKEN_GRACE_S"]),
        revoke_now=revoke_now,
    )
    if old_expires is None:
        click.echo(f"Rotated the token of {plugin_id}; the old token no longer works.")
    else:
        click.echo(
            f"Rotated the token of {plugin_id}; the old token works until "
            f"{iso_utc(old_expires)} (--revoke-now ends it at once)."
        )
    click.echo(token)


@plugins_cli.command("pending")
@refusals_as_errors
def pending() -> None:
    """List updates that move a plugin to another server and await approval."""
    rows = pending_updates.list_pending()
    if not rows:
        click.echo("No pending updates.")
    for row in map(pending_updates.summary, rows):
        click.echo(
            f"{row['id']}\t{row['plugin_id']}\t{row['previous_version']} -> {row['version']}\t"
            f"{row['previous_origin']} -> {row['origin']}\t{row['requested_at']}\t"
            f"{row['base_url']}"
        )


@plugins_cli.command("approve-update")
@click.argument("pending_id", type=int)
@refusals_as_errors
def approve_update(pending_id: int) -> None:
    """Apply pending update PENDING_ID (the number `plugins pending` shows): probe, then apply."""
    result = plugin_admin.approve_update(
        pending_id, actor=CLI_ACTOR, app=current_app._get_current_object()
    )
    plugin = catalog.get_plugin(result["plugin_id"])
    click.echo(
        f"Approved: {plugin.plugin_id} is at version {result['version']} ({result['state']}), "
        f"served from {plugin.base_url}."
    )
    if "migration" in result:
        click.echo("Its migration started; follow it with `plugins migration status`.")


@plugins_cli.command("reject-update")
@click.argument("pending_id", type=int)
@click.option("--reason", default="", help="Recorded in the audit log.")
@refusals_as_errors
def reject_update(pending_id: int, reason: str) -> None:
    """Discard pending update PENDING_ID; the plugin stays on its current server and version."""
    row = plugin_admin.reject_update(pending_id, actor=CLI_ACTOR, reason=reason)
    click.echo(f"Rejected the update of {row['plugin_id']} to {row['version']} ({row['origin']}).")


@plugins_cli.command("check")
@click.argument("manifest_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--core", default=None, help="The core to check against (default: this one).")
@click.option("--token", envvar="EXTFW_TOKEN", default=None, help="With --core: a bearer token.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@refusals_as_errors
def check(manifest_file: Path, core: str | None, token: str | None, as_json: bool) -> None:
    """Check a plugin against the contract: one PASS/WARN/FAIL line per check; exit 1 on a FAIL.

    Against this core (no --core, or its own BASE_URL) the checks run in this process; against
    another core they run there (POST …/contract-check, with --token: an operator's user JWT
    or the plugin's token).
    """
    try:
        manifest = json.loads(manifest_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{manifest_file} is not valid JSON: {exc}") from None
    plugin_id = manifest.get("plugin_id") if isinstance(manifest, dict) else None
    if core is None or core.rstrip("/") == current_app.config["BASE_URL"]:
        plugin = Plugin.get_or_none(Plugin.plugin_id == plugin_id) if plugin_id else None
        verdict, checks = contract_check.check_with_verdict(
            manifest,
            plugin=plugin,
            store=current_app.extensions["extframework.keys"],
            config=current_app.config,
        )
    else:
        verdict, checks = _remote_checks(core.rstrip("/"), str(plugin_id), manifest, token)
    if as_json:
        click.echo(json.dumps(checks, indent=2))
    else:
        for result in checks:
            route = f" {result['route']}" if result.get("route") else ""
            click.echo(f"{result['level'].upper()} {result['check']}{route}: {result['detail']}")
            for line in contract_check.verdict_lines(verdict) if result["check"] == "core" else []:
                click.echo(line)
    if not all(result["ok"] for result in checks):
        click.get_current_context().exit(1)


def _remote_checks(
    core: str, plugin_id: str, manifest: object, token: str | None
) -> tuple[dict, list]:
    """The other core's dry run verdict and checks."""
    if not token:
        raise click.ClickException("Checking against another core needs --token (or EXTFW_TOKEN).")
    verdict = _remote(core, plugin_id, "manifest-check", manifest, token)
    return verdict, _remote(core, plugin_id, "contract-check", manifest, token)["checks"]


def _remote(core: str, plugin_id: str, endpoint: str, manifest: object, token: str) -> dict:
    import requests  # here: a core serving views must not load it (tests/test_plugin_calls.py)

    url = f"{core}/api/registry/plugins/{quote(plugin_id, safe='')}/{endpoint}"
    try:
        response = requests.post(
            url, json=manifest, headers={"Authorization": f"Bearer {token}"}, timeout=600
        )
    except requests.RequestException as exc:
        raise click.ClickException(f"Could not reach {core}: {exc}") from None
    body = response.json() if "json" in response.headers.get("Content-Type", "") else {}
    if response.status_code != 200:
        reason = body.get("detail") or response.text[:200]
        raise click.ClickException(f"{url} answered {response.status_code}: {reason}")
    return body
