// A client for the core's storage API (Contract B, SPEC §5), authenticated by the plugin token.

import { ProblemError, problemOf } from './problems.mjs';
import { readToken } from './tokens.mjs';

/** The storage API refused a call: `status`, `problem`, `kind` (validation-failed,
 * stale-if-match, namespace-frozen...), `errors`, and in a batch `index`. */
export class StorageError extends ProblemError {
  constructor(status, problem) {
    super(`${status}: ${problem?.detail || problem?.title || 'storage refused the call'}`, status, problem);
    this.name = 'StorageError';
  }
}

const path = (collection, id) =>
  `/${encodeURIComponent(collection)}${id === undefined ? '' : `/${encodeURIComponent(id)}`}`;

/**
 * CRUD, queries and batches on this plugin's own collections, one tenant per call.
 * The token comes from `token`, or from `tokenFile`: read once, and read again when the core
 * answers 401, so a token an operator rotated into the file reaches a running plugin.
 */
export class StorageClient {
  constructor(coreUrl, { token = null, tokenFile = null, timeoutMs = 5000 } = {}) {
    this.base = `${coreUrl.replace(/\/+$/, '')}/api/storage`;
    this.token = token;
    this.tokenFile = tokenFile;
    this.timeoutMs = timeoutMs;
  }

  async #send(method, url, tenant, token, body, headers) {
    if (!token) throw new StorageError(401, { detail: 'the plugin has no token yet (not registered)' });
    return fetch(this.base + url, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'X-Tenant-ID': tenant, ...headers },
      body,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
  }

  async #call(method, url, tenant, { json, headers = {} } = {}) {
    if (!tenant) throw new TypeError('tenant is required: pass the caller\'s tenant claim');
    const body = json === undefined ? undefined : JSON.stringify(json);
    if (body !== undefined && !headers['Content-Type']) headers['Content-Type'] = 'application/json';
    if (!this.token && this.tokenFile) this.token = readToken(this.tokenFile);
    const token = this.token;
    let res = await this.#send(method, url, tenant, token, body, headers);
    if (res.status === 401 && this.tokenFile) {
      const fresh = readToken(this.tokenFile);
      if (fresh && fresh !== token) { // rotated: the file holds a newer token
        this.token = fresh;
        res = await this.#send(method, url, tenant, fresh, body, headers);
      }
    }
    if (!res.ok) throw new StorageError(res.status, await problemOf(res));
    return res.status === 204 ? null : res.json();
  }

  create(collection, data, { tenant }) {
    return this.#call('POST', path(collection), tenant, { json: data });
  }

  get(collection, id, { tenant }) {
    return this.#call('GET', path(collection, id), tenant);
  }

  /** One page: `{items, next_cursor}`; params are SPEC §5 filters, `sort`, `limit`, `cursor`. */
  query(collection, { tenant, ...params }) {
    const qs = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
    const search = qs.toString(); // URLSearchParams.size is Node 18.16+; engines says 18
    return this.#call('GET', `${path(collection)}${search ? `?${search}` : ''}`, tenant);
  }

  /** Yield the query's pages (arrays of documents) one at a time, following `next_cursor`. */
  async *pages(collection, { tenant, ...params }) {
    let cursor = null;
    do {
      const page = await this.query(collection, { tenant, ...params, ...(cursor ? { cursor } : {}) });
      yield page.items;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** Yield every matching document, page after page (`limit` sets the page size). */
  async *iterate(collection, options) {
    for await (const page of this.pages(collection, options)) yield* page;
  }

  async all(collection, options) {
    const items = [];
    for await (const doc of this.iterate(collection, options)) items.push(doc);
    return items;
  }

  /** A JSON merge patch; `ifMatch` (the version you read) makes a stale write a 412. */
  patch(collection, id, changes, { tenant, ifMatch } = {}) {
    const headers = { 'Content-Type': 'application/merge-patch+json' };
    if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = String(ifMatch);
    return this.#call('PATCH', path(collection, id), tenant, { json: changes, headers });
  }

  delete(collection, id, { tenant }) {
    return this.#call('DELETE', path(collection, id), tenant);
  }

  /** Up to 1000 operations, all or nothing: `{op: 'create', data}`, `{op: 'patch', id, data,
   * if_match?}`, `{op: 'delete', id}`; returns one result each. A refusal's `index` names the
   * operation that failed. */
  async batch(collection, operations, { tenant }) {
    const body = await this.#call('POST', `${path(collection)}/_batch`, tenant, { json: { operations } });
    return body.results;
  }
}
