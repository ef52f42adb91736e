// @extframework/sdk: what a Node.js plugin needs to keep the core's contract (docs/plugin-guide.md).

export {
  createVerifier,
  RequestTokenError,
  DEFAULT_LEEWAY_S,
  DEFAULT_CACHE_MAX_AGE_MS,
  ALGORITHMS,
  REQUIRED_CLAIMS,
} from './verify.mjs';
export { StorageClient, StorageError } from './storage.mjs';
export { registerOrUpdate, rotateToken, EnrolmentError } from './enrol.mjs';
export { ProblemError, kindOf, describe, TYPE_PREFIX } from './problems.mjs';
export { readToken, writeToken } from './tokens.mjs';

/** Escape text for HTML: fragments must never echo user input raw. */
export function escapeHtml(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

/** Read an urlencoded form body (the shell posts forms), refusing more than `limit` bytes. */
export async function readForm(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('form too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
