// Verify a core-minted JWT against the core's JWKS over HTTP, as a plugin in another language would.
// Usage: node verify_jwt.mjs <jwks-url> <issuer> <audience> <token>
// Prints {"ok": true, "payload": ..., "header": ...} or {"ok": false, "code": ..., "message": ...}.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, issuer, audience, token] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer, audience });
  console.log(JSON.stringify({ ok: true, payload, header: protectedHeader }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err.code ?? null, message: err.message }));
}
