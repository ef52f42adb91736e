"""Verify the request JWT the core sends with every proxied call (Contract A, SPEC §4)."""

import threading
import time
from dataclasses import dataclass

import jwt
import requests

ALGORITHMS = ("RS256", "ES256")
REQUIRED_CLAIMS = ["iss", "aud", "sub", "tenant", "role", "scopes", "iat", "exp", "jti"]
# Clock skew forgiven on exp/iat: the core mints tokens for 60 s, so 5 s is a twelfth of their life.
DEFAULT_LEEWAY_S = 5.0
# The core's JWKS max-age: a key withdrawn in an emergency rotation stops verifying within it.
DEFAULT_JWKS_TTL_S = 60.0


class RequestTokenError(Exception):
    """The request did not carry a valid request JWT from the core; answer 401."""


@dataclass(frozen=True)
class RequestContext:
    """Who is calling through the core, from a verified request JWT."""

    user_id: str
    name: str
    email: str
    tenant: str
    role: str
    scopes: tuple[str, ...]
    claims: dict

    def can(self, scope: str) -> bool:
        return scope in self.scopes


class JWKSCache:
    """The core's public keys, fetched from its JWKS and refreshed when a new ``kid`` appears.

    Like PyJWT's ``PyJWKClient``: keys are kept for ``ttl_s``, and an unknown ``kid`` triggers
    a refetch. Fetches (successful or not) are at most one every ``min_refresh_s``, so a flood
    of tokens naming made-up kids, or a JWKS that keeps failing, cannot turn into a flood of
    requests to the core. The core publishes a new key 90 s before it signs with it, so a
    verifier refetching within that time never refuses a genuine token.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        ttl_s: float = DEFAULT_JWKS_TTL_S,
        min_refresh_s: float = 5.0,
        timeout_s: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        self.jwks_url = jwks_url
        self.ttl_s = ttl_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._tried_at = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        self._tried_at = time.monotonic()
        response = self.session.get(self.jwks_url, timeout=self.timeout_s)
        response.raise_for_status()
        document = response.json()
        listed = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(listed, list):
            raise ValueError("the JWKS is not an object with a 'keys' list")
        keys = {}
        for data in listed:
            if isinstance(data, dict) and data.get("kid") and data.get("alg") in ALGORITHMS:
                try:
                    keys[data["kid"]] = jwt.PyJWK(data)
                except jwt.PyJWTError:
                    continue  # a key we cannot use verifies nothing; the others still do
        self._keys, self._fetched_at = keys, time.monotonic()

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            wanted = kid not in self._keys or now - self._fetched_at > self.ttl_s
            if wanted and now - self._tried_at >= self.min_refresh_s:
                try:
                    self._refresh()
                except (requests.RequestException, ValueError) as exc:
                    if kid not in self._keys:
                        raise RequestTokenError(f"cannot fetch the core's JWKS: {exc}") from None
            if kid not in self._keys:
                raise RequestTokenError("the token's key is not in the core's JWKS")
            return self._keys[kid]


class RequestVerifier:
    """Check a request JWT: the core's key and algorithm, our audience, the core as issuer."""

    def __init__(
        self,
        core_url: str,
        plugin_id: str,
        *,
        jwks: JWKSCache | None = None,
        leeway_s: float = DEFAULT_LEEWAY_S,
    ) -> None:
        self.issuer = core_url.rstrip("/")
        self.audience = plugin_id
        self.jwks = jwks or JWKSCache(self.issuer + "/.well-known/jwks.json")
        self.leeway_s = leeway_s

    def verify(self, authorization: str | None) -> RequestContext:
        """Return the caller for an ``Authorization`` header value, or raise RequestTokenError."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RequestTokenError("missing 'Authorization: Bearer <request JWT>'")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise RequestTokenError(f"not a JWT: {exc}") from None
        key = self.jwks.key(str(header.get("kid", "")))
        if header.get("alg") != key.algorithm_name:
            raise RequestTokenError("the token's algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidTokenError as exc:
            raise RequestTokenError(f"invalid request JWT: {exc}") from None
        return RequestContext(
            user_id=str(claims["sub"]),
            name=str(claims.get("name", "")),
            email=str(claims.get("email", "")),
            tenant=str(claims["tenant"]),
            role=str(claims["role"]),
            scopes=tuple(claims["scopes"]),
            claims=claims,
        )
