"""Identity's paths (blueprints/auth.py): user tokens, the caller, the JWKS."""

from extframework.blueprints.auth import CREDENTIALS
from extframework.models import ROLES
from extframework.openapi.common import (
    STRING,
    USER,
    answer,
    answer_cached,
    array,
    common_errors,
    fields_body,
    obj,
    problem,
    ref,
)


def paths() -> dict:
    return {
        "/api/auth/token": {
            "post": {
                "tags": ["auth"],
                "summary": "Exchange email and password for a user JWT",
                "operationId": "issueUserToken",
                "security": [],
                "requestBody": fields_body(
                    CREDENTIALS, {"email": STRING, "password": {**STRING, "format": "password"}}
                ),
                "responses": {
                    "200": answer("A bearer token for the API.", ref("UserToken")),
                    **common_errors(body=True, auth=False),
                    "401": problem(
                        401,
                        "unauthorized",
                        note="A wrong email or password, or a deactivated "
                        "account (the answer does not say which).",
                    ),
                    "429": problem(
                        429,
                        "too-many-requests",
                        note="Too many failed logins on this account (from this address, or "
                        "from many), or from this address on many accounts; see "
                        "docs/identity.md.",
                    ),
                },
            }
        },
        "/api/auth/me": {
            "get": {
                "tags": ["auth"],
                "summary": "Who the caller is",
                "description": "A plugin token or a request JWT gets 401.",
                "operationId": "whoAmI",
                "security": USER,
                "responses": {"200": answer("The caller.", ref("Me")), **common_errors()},
            }
        },
        "/.well-known/jwks.json": {
            "get": {
                "tags": ["auth"],
                "summary": "Public keys that verify request JWTs",
                "description": "Cache it at most for its max-age; a new signing key is "
                "published here before it signs (docs/identity.md).",
                "operationId": "jwks",
                "security": [],
                "responses": {
                    "200": answer_cached("The key set.", ref("JWKS")),
                    **common_errors(auth=False),
                },
            }
        },
    }


def schemas() -> dict:
    jwk = {
        "type": "object",
        "description": "A public key (RFC 7517): EC P-256 for ES256, RSA for RS256.",
        "required": ["kty", "kid", "alg", "use"],
        "properties": {
            "kty": {"enum": ["EC", "RSA"]},
            "kid": STRING,
            "alg": {"enum": ["ES256", "RS256"]},
            "use": {"const": "sig"},
            "crv": STRING,
            "x": STRING,
            "y": STRING,
            "n": STRING,
            "e": STRING,
        },
        "additionalProperties": True,
    }
    return {
        "UserToken": obj(
            {
                "access_token": STRING,
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer", "minimum": 1},
            }
        ),
        "Me": obj(
            {
                "id": {"type": "integer"},
                "email": STRING,
                "name": STRING,
                "role": {"enum": list(ROLES)},
                "tenant": STRING,
                "operator": {"type": "boolean"},
                "authenticated_by": {"enum": ["session", "jwt"]},
            }
        ),
        "JWK": jwk,
        "JWKS": obj({"keys": array(ref("JWK"), minItems=1)}),
    }
