"""Operator commands: ``flask --app app <group> <command>``."""

import os
import secrets
from functools import wraps

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from extframework import settings
from extframework.config import JWKS_MAX_AGE_S
from extframework.db import database
from extframework.errors import DomainError, Invalid
from extframework.models import ROLES
from extframework.services import accounts, sessions, tokens

users_cli = AppGroup("users", help="Manage user accounts.")
tenants_cli = AppGroup("tenants", help="Manage tenants.")
keys_cli = AppGroup("keys", help="Manage the core's JWT signing keys.")
config_cli = AppGroup("config", help="Show and check the core's settings.")

CLI_ACTOR = "cli"


def init_app(app: Flask) -> None:
    for group in (users_cli, tenants_cli, keys_cli, config_cli):
        app.cli.add_command(group)


def refusals_as_errors(func):
    """Turn a service's refusal into a CLI error listing each problem, with a non-zero exit."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with database.connection_context():
                return func(*args, **kwargs)
        except DomainError as exc:
            lines = [exc.detail]
            for error in exc.errors or []:
                where = error.get("pointer") or "/"
                lines.append(f"  {where}: {error.get('message')}")
            allowed = exc.extra.get("allowed")
            if allowed is not None and "Allowed" not in exc.detail:
                lines.append(f"  allowed: {', '.join(allowed) or 'none'}")
            for change in exc.extra.get("diff") or []:
                lines.append(f"  {change['collection']} {change['path']}: {change['kind']}")
            raise click.ClickException("\n".join(lines)) from None

    return wrapper


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
@click.option("--operator", is_flag=True, help="Installation-wide administrator.")
@click.option("--tenant", default=accounts.DEFAULT_TENANT, show_default=True)
@click.option("--name", default="", help="Display name.")
@refusals_as_errors
def create_user(email: str, role: str, operator: bool, tenant: str, name: str) -> None:
    """Create a user; the password comes from EXTFW_PASSWORD or a prompt."""
    password = os.environ.get("EXTFW_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    user = accounts.create_user(
        email, password, role=role, operator=operator, tenant=tenant, name=name, actor=CLI_ACTOR
    )
    click.echo(f"Created user {user.email} ({role}{', operator' if operator else ''}) in {tenant}.")


@users_cli.command("list")
@refusals_as_errors
def list_users() -> None:
    """Every user: email, role, tenant, operator and active flags."""
    for user in accounts.list_users():
        flags = [
            f for f, on in (("operator", user.is_operator), ("inactive", not user.is_active)) if on
        ]
        extra = f"  ({', '.join(flags)})" if flags else ""
        click.echo(f"{user.email:<40} {user.role:<7} {user.tenant.slug}{extra}")


@users_cli.command("set-role")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--operator/--no-operator", default=None, help="Change the operator flag too.")
@refusals_as_errors
def set_role(email: str, role: str, operator: bool | None) -> None:
    """Change a user's role (and operator flag); their sessions and user tokens end."""
    user = accounts.set_role(
        accounts.get_user_by_email(email).id, role, operator=operator, actor=CLI_ACTOR
    )
    click.echo(f"{user.email} is {user.role}{', operator' if user.is_operator else ''}.")


@users_cli.command("deactivate")
@click.argument("email")
@refusals_as_errors
def deactivate_user(email: str) -> None:
    """Stop a user logging in; their sessions and user tokens end for good."""
    user = accounts.set_active(accounts.get_user_by_email(email).id, False, actor=CLI_ACTOR)
    click.echo(f"Deactivated {user.email}; their sessions and user tokens have ended.")


@users_cli.command("reactivate")
@click.argument("email")
@refusals_as_errors
def reactivate_user(email: str) -> None:
    """Let a deactivated user log in again (with a new login: old sessions stay ended)."""
    user = accounts.set_active(accounts.get_user_by_email(email).id, True, actor=CLI_ACTOR)
    click.echo(f"Reactivated {user.email}.")


@users_cli.command("set-password")
@click.argument("email")
@refusals_as_errors
def set_password(email: str) -> None:
    """Set a user's password (EXTFW_PASSWORD or a prompt); their sessions and tokens end."""
    password = os.environ.get("EXTFW_PASSWORD") or click.prompt(
        "New password", hide_input=True, confirmation_prompt=True
    )
    user = sessions.set_password_by_email(email, password, actor=CLI_ACTOR)
    click.echo(f"Set a new password for {user.email}; their sessions and user tokens have ended.")


@users_cli.command("bootstrap-admin")
@click.option("--email", default="admin@example.com", show_default=True)
@refusals_as_errors
def bootstrap_admin(email: str) -> None:
    """Create a first operator admin when there is no user yet (EXTFW_ADMIN_PASSWORD or random)."""
    if accounts.has_users():
        click.echo("Users exist already; no admin created.")
        return
    password = os.environ.get("EXTFW_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    accounts.create_user(email, password, role="admin", operator=True, actor=CLI_ACTOR)
    click.echo(f"Created operator admin {email}")
    if not os.environ.get("EXTFW_ADMIN_PASSWORD"):
        click.echo(f"Its password, shown once: {password}")


@tenants_cli.command("create")
@click.argument("slug")
@click.option("--name", default=None, help="Display name (default: the slug).")
@refusals_as_errors
def create_tenant(slug: str, name: str | None) -> None:
    """Create a tenant."""
    tenant = accounts.create_tenant(slug, name, actor=CLI_ACTOR)
    click.echo(f"Created tenant {tenant.slug}.")


@tenants_cli.command("list")
@refusals_as_errors
def list_tenants() -> None:
    """Every tenant: slug and name."""
    for tenant in accounts.list_tenants():
        click.echo(f"{tenant.slug:<30} {tenant.name}")


@keys_cli.command("rotate")
@click.option(
    "--now",
    "emergency",
    is_flag=True,
    help="Emergency (a leaked key): sign with the new key at once and withdraw every other key "
    "from the JWKS at once; tokens they signed stop verifying.",
)
@refusals_as_errors
def rotate_keys(emergency: bool) -> None:
    """Publish a new signing key; it signs after KEY_PUBLISH_DELAY_S (JWKS caches expire)."""
    try:
        delay_s = float(current_app.config["KEY_PUBLISH_DELAY_S"])
    except (TypeError, ValueError):
        raise Invalid(
            "KEY_PUBLISH_DELAY_S must be a number of seconds, "
            f"not {current_app.config['KEY_PUBLISH_DELAY_S']!r}."
        ) from None
    rotation = tokens.rotate_signing_key(
        current_app.extensions["extframework.keys"],
        delay_s=delay_s,
        now=emergency,
        actor=CLI_ACTOR,
    )
    click.echo(f"New {rotation.algorithm} signing key {rotation.kid}, published now.")
    if emergency:
        withdrawn = ", ".join(rotation.withdrawn) or "none"
        click.echo(f"It signs from now on; withdrawn from the JWKS at once: {withdrawn}.")
        return
    click.echo(f"It signs from {tokens.iso_utc(rotation.sign_from)}; the key it replaces stays")
    click.echo("published until the last token it signed has expired.")
    if delay_s < JWKS_MAX_AGE_S:
        click.echo(
            f"Warning: KEY_PUBLISH_DELAY_S ({delay_s:g} s) is shorter than the JWKS max-age "
            f"({JWKS_MAX_AGE_S} s): a plugin holding a cached JWKS may refuse the new key's tokens."
        )


@keys_cli.command("list")
def list_keys() -> None:
    """Show each signing key: its state, published, signs from/until, out of the JWKS from."""
    columns = ("kid", "alg", "state", "published", "signs from", "signs until", "unpublished")
    widths = (16, 5, 9, 20, 20, 20, 20)
    click.echo("  ".join(f"{c:<{w}}" for c, w in zip(columns, widths, strict=True)).rstrip())
    iso = tokens.iso_utc
    for row in current_app.extensions["extframework.keys"].status():
        cells = (
            row["kid"],
            row["alg"],
            row["state"],
            iso(row["published_at"]),
            iso(row["signs_from"]),
            iso(row["signs_until"]),
            iso(row["unpublished_at"]),
        )
        line = "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()
        click.echo(f"{line}  ({row['withdrawn_why']})" if row["withdrawn_why"] else line)


@config_cli.command("show")
def show_config() -> None:
    """Print every setting's value and where it came from; secrets are redacted."""
    sources = current_app.extensions["extframework.setting_sources"]
    for setting in settings.SETTINGS:
        value = settings.shown(setting.name, current_app.config.get(setting.name))
        click.echo(f"{setting.name} = {value}  ({sources.get(setting.name, 'default')})")


@config_cli.command("check")
def check_config() -> None:
    """Exit non-zero when an EXTFW_* variable names no setting (wrong values stop any start)."""
    unknown = current_app.extensions["extframework.unknown_settings"]
    for warning in unknown:
        click.echo(f"Warning: {warning}", err=True)
    if unknown:
        raise click.exceptions.Exit(1)
    click.echo(f"OK: {len(settings.SETTINGS)} settings, every value in range.")


@config_cli.command("table")
def config_table() -> None:
    """Print the settings as the README's Markdown table."""
    click.echo(settings.markdown_table())
