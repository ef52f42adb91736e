"""Caching: an answer that does not choose its own ``Cache-Control`` is never stored (issue 11).

Pages for a logged-in person, user JWTs, API answers and the login page must not stay in a
browser's or a proxy's cache. Answers that decide their caching on purpose keep it: the JWKS,
the published schemas and static files set ``Cache-Control`` themselves.
"""

from flask import Flask, Response


def init_app(app: Flask) -> None:
    app.after_request(no_store_by_default)


def no_store_by_default(response: Response) -> Response:
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response
