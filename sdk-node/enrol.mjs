// Enrol with the core on start (register once, then send manifest updates; SPEC §3), and
// rotate the plugin token (SPEC §4).

import { ProblemError, describe, problemOf } from './problems.mjs';
import { readToken, writeToken } from './tokens.mjs';

/** The core refused the plugin for good; `kind` says why: invalid-manifest (see `errors`),
 * plugin-id-taken, breaking-change (see `problem.diff`; declare a migration),
 * version-not-higher (an older build than the installed one), version-manifest-changed
 * (a changed manifest needs a new version), data-retained, unauthorized... */
export class EnrolmentError extends ProblemError {
  constructor(message, status = null, problem = {}) {
    super(message, status, problem);
    this.name = 'EnrolmentError';
  }
}

class Retry extends Error {}

async function refused(what, res) {
  const problem = await problemOf(res);
  return new EnrolmentError(`${what} refused (${res.status}): ${describe(problem)}`, res.status, problem);
}

async function send(url, method, bearer, body, timeoutMs) {
  try {
    return await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new Retry(err.message);
  }
}

async function attempt(api, manifest, tokenFile, enrolmentKey, timeoutMs, log) {
  const token = readToken(tokenFile);
  if (token) {
    const res = await send(`${api}/${manifest.plugin_id}`, 'PUT', token, manifest, timeoutMs);
    if (res.status === 200) {
      log.info?.(`manifest updated to ${manifest.version}`);
      return token;
    }
    if (res.status === 202) {
      // A migration started, or a move to another server awaits an operator's approval.
      log.warn?.(`update to ${manifest.version} accepted, not yet applied: ${describe(await problemOf(res))}`);
      return token;
    }
    const error = await refused('update', res);
    // Only "installed at exactly this version" means nothing to do: a breaking-change, an
    // older version or a changed manifest under the same version must stop the plugin.
    if (error.kind === 'version-not-higher' && error.problem.current_version === manifest.version) {
      log.info?.('already registered at this version');
      return token;
    }
    if (res.status >= 500) throw new Retry(`core answered ${res.status}`);
    if (res.status !== 401) throw error;
    log.warn?.('stored plugin token was refused; registering again');
  }
  if (!enrolmentKey) throw new EnrolmentError('no plugin token and no enrolment key: cannot register');
  const res = await send(api, 'POST', enrolmentKey, manifest, timeoutMs);
  if (res.status === 201) {
    const { plugin_token: fresh } = await res.json();
    writeToken(tokenFile, fresh);
    log.info?.(`registered as ${manifest.plugin_id}`);
    return fresh;
  }
  if (res.status >= 500 && res.status !== 502) throw new Retry(`core answered ${res.status}`);
  throw await refused('registration', res);
}

/**
 * Resolve to a working plugin token: update with the stored one (`tokenFile`), else register
 * with `enrolmentKey` and store the token. The same version and manifest as installed is a
 * no-op; a 202 (migration, or approval pending) is logged and the token returned; every other
 * refusal rejects with EnrolmentError and its `kind`. Connection errors and 5xx are retried
 * `attempts` times (the core may still be starting).
 */
export async function registerOrUpdate(coreUrl, manifest, {
  tokenFile, enrolmentKey = null, attempts = 30, timeoutMs = 10000, log = console,
}) {
  const api = `${coreUrl.replace(/\/+$/, '')}/api/registry/plugins`;
  let last = '';
  for (let n = 0; n < attempts; n += 1) {
    try {
      return await attempt(api, manifest, tokenFile, enrolmentKey, timeoutMs, log);
    } catch (err) {
      if (!(err instanceof Retry)) throw err;
      last = err.message;
      await new Promise((resolve) => { setTimeout(resolve, Math.min(200 * 2 ** n, 2000)); });
    }
  }
  throw new EnrolmentError(`the core at ${coreUrl} did not answer after ${attempts} attempts (${last})`);
}

/**
 * Rotate this plugin's token with the one in `tokenFile`; store and return the new one. The old
 * token keeps working for the core's grace period (an hour by default) unless `revokeNow`.
 */
export async function rotateToken(coreUrl, pluginId, { tokenFile, revokeNow = false, timeoutMs = 10000 }) {
  const token = readToken(tokenFile);
  if (!token) throw new EnrolmentError(`no plugin token in ${tokenFile}: register first`);
  const url = `${coreUrl.replace(/\/+$/, '')}/api/registry/plugins/${encodeURIComponent(pluginId)}/rotate-token`;
  const res = await fetch(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ revoke_now: revokeNow }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (res.status !== 200) throw await refused('token rotation', res);
  const { plugin_token: fresh } = await res.json();
  writeToken(tokenFile, fresh);
  return fresh;
}
