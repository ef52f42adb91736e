"""The filesystem over HTTP."""

from flask import Blueprint

bp = Blueprint("storage", __name__)
