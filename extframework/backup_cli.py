"""``flask --app app backup create|verify|restore``: one file holding a whole instance."""

import tempfile
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from extframework import dialect
from extframework.db import MIGRATIONS, database
from extframework.models import utcnow
from extframework.services import backup

backup_cli = AppGroup(
    "backup", help="Back up and restore the database, keys, secrets and archives."
)


def init_app(app: Flask) -> None:
    app.cli.add_command(backup_cli)


def _describe(manifest: dict) -> str:
    files = manifest["files"]
    size = sum(entry["bytes"] for entry in files.values())
    return (
        f"taken {manifest['created_at']}, core schema version {manifest['core_schema_version']}, "
        f"{len(files)} file(s), {size} bytes before compression"
    )


@backup_cli.command("create")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def create(path: Path | None) -> None:
    """Write a backup while the core runs (default: <instance>/backups/<UTC time>.tar.gz)."""
    if dialect.current().file_backup_refusal:
        raise click.ClickException(dialect.current().file_backup_refusal)
    if path is None:
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        path = Path(current_app.instance_path) / "backups" / f"extframework-{stamp}.tar.gz"
    try:
        manifest = backup.create(
            current_app.config["DATABASE"],
            current_app.instance_path,
            path,
            current_app.config["ARCHIVE_PATH"],
        )
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Backup {_describe(manifest)}.")
    click.echo(str(path))


@backup_cli.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify(path: Path) -> None:
    """Check a backup's checksums and its database's integrity; change nothing."""
    with tempfile.TemporaryDirectory(prefix="extframework-verify-") as work:
        try:
            manifest = backup.verify(path, Path(work))
        except backup.BackupError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"OK: {path} is a sound backup, {_describe(manifest)}.")


@backup_cli.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an instance that holds data already.")
def restore(path: Path, force: bool) -> None:
    """Restore a backup into this instance folder; stop the core first."""
    if dialect.current().file_backup_refusal:
        raise click.ClickException(dialect.current().file_backup_refusal)
    database.close_all()  # this process's pooled connections point at the file being replaced
    try:
        manifest = backup.restore(
            path,
            current_app.config["DATABASE"],
            current_app.instance_path,
            force=force,
            archive_path=current_app.config["ARCHIVE_PATH"],
        )
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Restored into {current_app.instance_path}: {_describe(manifest)}.")
    if manifest["core_schema_version"] < len(MIGRATIONS):
        click.echo("The backup is from an older release: run 'flask --app app init-db' next.")
