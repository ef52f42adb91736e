// A whole extframework plugin: a view, a form action, storage (docs/plugin-guide.md).
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createVerifier, escapeHtml, readForm, registerOrUpdate, StorageClient } from '@extframework/sdk';

const CORE = process.env.EXTFW_CORE_URL || 'http://127.0.0.1:5000';
const PORT = Number(process.env.PORT || 9202);
const TOKEN_FILE = process.env.PLUGIN_TOKEN_FILE || 'instance/minimal-node.token';
const manifest = JSON.parse(readFileSync(new URL('./manifest.json', import.meta.url), 'utf8'));
manifest.base_url = `http://127.0.0.1:${PORT}`;
const verify = createVerifier({ coreUrl: CORE, pluginId: manifest.plugin_id });
const storage = new StorageClient(CORE, { tokenFile: TOKEN_FILE });
const page = (docs) => `<h1>Items</h1><ul class="items">${docs.map((d) => `<li>${escapeHtml(d.data.text)}</li>`).join('')}
</ul><form method="post" action="/items"><label for="text">Text</label> <input id="text" name="text" required>
<button>Add item</button></form>`;
const html = (res, status, body, headers = {}) =>
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', ...headers }).end(body);

async function handle(req, res) {
  if (req.url === '/health') return res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
  let tenant;
  try {
    ({ tenant } = await verify(req.headers.authorization));
  } catch {
    return html(res, 401, '<p>Not from the core.</p>');
  }
  if (req.url !== '/items') return html(res, 404, '<p>Not here.</p>');
  if (req.method === 'POST') {
    await storage.create('items', { text: (await readForm(req)).get('text') || '' }, { tenant });
    return html(res, 303, '', { Location: '/items' });
  }
  return html(res, 200, page(await storage.all('items', { tenant, sort: 'text' })));
}

createServer((req, res) => handle(req, res).catch((err) => html(res, 500, `<p>${escapeHtml(err.message)}</p>`)))
  .listen(PORT, '127.0.0.1', () => { // listening first: the core probes /health while we register
    registerOrUpdate(CORE, manifest, { tokenFile: TOKEN_FILE, enrolmentKey: process.env.EXTFW_ENROLMENT_KEY })
      .catch((err) => { console.error(`cannot enrol: ${err.message}`); process.exit(1); });
  });
