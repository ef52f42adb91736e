// A plugin's verifier that keeps the core's JWKS cached, as the plugin guide tells it to.
// Usage: node cached_verifier.mjs <jwks-url> <issuer> <audience>
// Reads one token per line on stdin and verifies each with the same createRemoteJWKSet
// (cached for 60 s, jose's default 30 s cooldown before a refetch for an unknown kid).
// Prints one line per token: {"ok", "kid", "fetches", "code"?, "message"?}, where fetches
// counts the JWKS requests made so far.
import { createInterface } from "node:readline";
import { createRemoteJWKSet, customFetch, jwtVerify } from "jose";

const [jwksUrl, issuer, audience] = process.argv.slice(2);
let fetches = 0;
const jwks = createRemoteJWKSet(new URL(jwksUrl), {
  cacheMaxAge: 60_000,
  [customFetch]: (...args) => {
    fetches += 1;
    return fetch(...args);
  },
});

for await (const line of createInterface({ input: process.stdin })) {
  const token = line.trim();
  if (!token) continue;
  try {
    const { protectedHeader } = await jwtVerify(token, jwks, { issuer, audience });
    console.log(JSON.stringify({ ok: true, kid: protectedHeader.kid, fetches }));
  } catch (err) {
    console.log(JSON.stringify({ ok: false, code: err.code ?? null, message: err.message, fetches }));
  }
}
