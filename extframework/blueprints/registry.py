"""The package manager over HTTP."""

from flask import Blueprint

bp = Blueprint("registry", __name__)
