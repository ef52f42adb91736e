"""Helpers for plugin authors: verify the core's request JWTs, use the storage API, enrol."""

from extframework_sdk.auth import (
    DEFAULT_JWKS_TTL_S,
    DEFAULT_LEEWAY_S,
    JWKSCache,
    RequestContext,
    RequestTokenError,
    RequestVerifier,
)
from extframework_sdk.enrol import EnrolmentError, register_or_update
from extframework_sdk.problems import ProblemError, kind_of
from extframework_sdk.storage import StorageClient, StorageError
from extframework_sdk.tokens import rotate_token, token_fingerprint

__all__ = [
    "DEFAULT_JWKS_TTL_S",
    "DEFAULT_LEEWAY_S",
    "EnrolmentError",
    "JWKSCache",
    "ProblemError",
    "RequestContext",
    "RequestTokenError",
    "RequestVerifier",
    "StorageClient",
    "StorageError",
    "kind_of",
    "register_or_update",
    "rotate_token",
    "token_fingerprint",
]
