"""``flask --app app db copy --to postgresql://…``: move a stopped SQLite installation."""

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from extframework.services import archives, db_copy

db_cli = click.Group("db", help="Move the core's database.")


@db_cli.command("copy")
@click.option("--to", "url", required=True, help="The empty PostgreSQL database's URL.")
@click.option(
    "--archives-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also copy the archive files to this folder (ARCHIVE_PATH of the new hosts).",
)
@with_appcontext
def copy(url: str, archives_to: Path | None) -> None:
    """Copy this SQLite installation (stop the core first) into PostgreSQL, and verify it."""
    config = current_app.config
    if config.get("DATABASE_URL"):
        raise click.ClickException("DATABASE_URL is set: db copy reads the SQLite file DATABASE.")
    try:
        tables = db_copy.copy(
            config["DATABASE"],
            url,
            config,
            archives_from=archives.archive_root(current_app),
            archives_to=archives_to,
        )
    except db_copy.CopyError as exc:
        raise click.ClickException(str(exc)) from None
    for table in tables:
        click.echo(f"{table.table}\t{table.rows} row(s)\tsha256 {table.sha256[:16]}… verified")
    click.echo(
        "Copied and verified. Start every host with EXTFW_DATABASE_URL set to the target and "
        "EXTFW_SECRET_KEY set to this instance's secret (it seals the signing keys)."
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(db_cli)
