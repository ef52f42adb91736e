"""Entry point for ``flask --app app`` and ``gunicorn app:app``."""

from extframework import create_app

app = create_app()
