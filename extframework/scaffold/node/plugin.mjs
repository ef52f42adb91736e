// __PLUGIN_NAME__: the routes manifest.json declares, as a node:http handler.
// server.mjs gives it the core's request verifier and storage client (@extframework/sdk);
// plugin.test.mjs gives it fakes.

import { escapeHtml, readForm } from '@extframework/sdk';

export const COLLECTION = 'items';

function send(res, status, html, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', ...headers });
  res.end(html);
}

// A fragment, not a page: the shell places it in its layout and rewrites /items to its proxy.
function page(name, caller, docs, errors) {
  const list = docs.length
    ? `<ul class="items">${docs.map((d) => `<li>${escapeHtml(d.data.text)}</li>`).join('')}</ul>`
    : '<p class="empty">Nothing yet.</p>';
  const form = caller.can('actions:write') ? `<form method="post" action="/items">
  <label for="text">Text</label> <input id="text" name="text" required maxlength="200">
  <button type="submit">Add item</button>
</form>` : '';
  const alerts = errors.map((e) => `<p class="error" role="alert">${escapeHtml(e)}</p>`).join('');
  return `<h1>${escapeHtml(name)}</h1>\n${list}\n${alerts}${form}`;
}

/** A request handler: `verify(authorization)` resolves to the caller, `storage` is a StorageClient. */
export function createHandler({ name, verify, storage, log = console }) {
  async function view(res, caller, errors = [], status = 200) {
    const docs = await storage.all(COLLECTION, { tenant: caller.tenant, sort: 'text' });
    return send(res, status, page(name, caller, docs, errors));
  }

  return async function handle(req, res) {
    const { pathname } = new URL(req.url, 'http://plugin.invalid');
    if (req.method === 'GET' && pathname === '/health') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end('{"status":"ok"}');
    }
    let caller;
    try {
      caller = await verify(req.headers.authorization);
    } catch (err) {
      log.warn(`refused ${req.method} ${pathname}: ${err.message}`);
      return send(res, 401, '<p>This request did not come from the core.</p>');
    }
    try {
      if (pathname === '/items' && req.method === 'GET') return await view(res, caller);
      if (pathname === '/items' && req.method === 'POST') {
        const text = ((await readForm(req)).get('text') || '').trim();
        try {
          await storage.create(COLLECTION, { text }, { tenant: caller.tenant });
        } catch (err) {
          if (err.status !== 422) throw err;
          const errors = err.errors.map((e) => `${e.pointer || '/'}: ${e.message}`);
          return await view(res, caller, errors.length ? errors : [err.message], 422);
        }
        return send(res, 303, '', { Location: '/items' });
      }
      return send(res, 404, '<p>Not here.</p>');
    } catch (err) {
      log.error(`${req.method} ${pathname} failed: ${err.message}`);
      return send(res, err.status === 413 ? 413 : 500, `<p>${escapeHtml(name)} ran into an error.</p>`);
    }
  };
}
