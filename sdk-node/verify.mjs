// Verify the request JWT the core sends with every proxied call (Contract A, SPEC §4).

import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, errors } from 'jose';

/** Clock skew forgiven on `exp`/`iat`, in seconds: a twelfth of the core's 60 s tokens. */
export const DEFAULT_LEEWAY_S = 5;
/** The core's JWKS max-age: a key withdrawn in an emergency rotation stops verifying within it. */
export const DEFAULT_CACHE_MAX_AGE_MS = 60000;
export const ALGORITHMS = ['ES256', 'RS256'];
export const REQUIRED_CLAIMS = ['iss', 'aud', 'exp', 'sub', 'tenant', 'role', 'scopes', 'iat', 'jti'];

/** The request did not carry a valid request JWT from the core; answer 401. */
export class RequestTokenError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RequestTokenError';
  }
}

// jose's createRemoteJWKSet refetches for an unknown kid at most once per cooldown, but only
// after a successful fetch: while the JWKS fails, every token would fetch again. This wrapper
// also holds back for `cooldownMs` after a failed fetch. Meanwhile, and when a refetch fails,
// the keys already fetched keep verifying (a flood of made-up kids while the core is
// unreachable must not lock out genuine tokens).
function rateLimited(remote, cooldownMs) {
  let failedAt = -Infinity;
  let failure = '';
  async function fromCache(header, token) {
    const cached = remote.jwks();
    if (!cached) return null;
    try {
      return await createLocalJWKSet(cached)(header, token);
    } catch {
      return null;
    }
  }
  return async (header, token) => {
    if (Date.now() - failedAt < cooldownMs) {
      const key = await fromCache(header, token);
      if (key) return key;
      throw new RequestTokenError(`cannot fetch the core's JWKS (${failure}); not retrying yet`);
    }
    try {
      return await remote(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) {
        throw new RequestTokenError("the token's key is not in the core's JWKS");
      }
      if (err instanceof errors.JWKSMultipleMatchingKeys) throw new RequestTokenError(err.message);
      failedAt = Date.now();
      failure = err.message;
      const key = await fromCache(header, token);
      if (key) return key;
      throw new RequestTokenError(`cannot fetch the core's JWKS: ${err.message}`);
    }
  };
}

/**
 * Return `verify(authorizationHeader)`, resolving to the caller or rejecting with
 * RequestTokenError. The issuer (the core's URL), the audience (the plugin_id), `exp` and the
 * algorithm (the one the key's JWK names, ES256 or RS256; never `none` or HMAC) are required.
 * Keys are cached `cacheMaxAgeMs` (default 60 s, the JWKS's max-age); an unknown `kid` refetches at most once every
 * `cooldownMs` (default 5 s), failed fetches included.
 */
export function createVerifier({
  coreUrl,
  pluginId,
  leewayS = DEFAULT_LEEWAY_S,
  cooldownMs = 5000,
  cacheMaxAgeMs = DEFAULT_CACHE_MAX_AGE_MS,
  jwksUrl,
}) {
  const issuer = coreUrl.replace(/\/+$/, '');
  const remote = createRemoteJWKSet(new URL(jwksUrl || `${issuer}/.well-known/jwks.json`), {
    cooldownDuration: cooldownMs,
    cacheMaxAge: cacheMaxAgeMs,
  });
  const keys = rateLimited(remote, cooldownMs);
  return async function verify(authorization) {
    const [scheme, token, extra] = String(authorization || '').trim().split(/\s+/);
    if (scheme?.toLowerCase() !== 'bearer' || !token || extra) {
      throw new RequestTokenError("missing 'Authorization: Bearer <request JWT>'");
    }
    let payload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer,
        audience: pluginId,
        algorithms: ALGORITHMS,
        requiredClaims: REQUIRED_CLAIMS,
        clockTolerance: leewayS,
      }));
    } catch (err) {
      if (err instanceof RequestTokenError) throw err;
      throw new RequestTokenError(`invalid request JWT: ${err.message}`);
    }
    const scopes = Array.isArray(payload.scopes) ? payload.scopes.map(String) : [];
    return {
      userId: String(payload.sub),
      name: String(payload.name ?? ''),
      email: String(payload.email ?? ''),
      tenant: String(payload.tenant),
      role: String(payload.role),
      scopes,
      claims: payload,
      can: (scope) => scopes.includes(scope),
    };
  };
}
