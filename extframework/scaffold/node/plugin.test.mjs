// Tests for __PLUGIN_NAME__ that need no core: fakes stand in for the verifier and storage.
// Run them with `npm test` (node --test). To test the contract against a running core, use
// `flask --app app plugins check manifest.json --core URL` from the core's repository.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { RequestTokenError, StorageError } from '@extframework/sdk';
import { createHandler } from './plugin.mjs';

const AUTH = { Authorization: 'Bearer from-the-core' };
const manifest = JSON.parse(readFileSync(new URL('./manifest.json', import.meta.url), 'utf8'));
const docs = [];

async function verify(authorization) {
  if (authorization !== AUTH.Authorization) throw new RequestTokenError('not from the core');
  const scopes = ['views:read', 'actions:write'];
  return { userId: '1', tenant: 'default', role: 'member', scopes, can: (s) => scopes.includes(s) };
}

const storage = {
  async all() {
    return [...docs].sort((a, b) => a.data.text.localeCompare(b.data.text));
  },
  async create(collection, data) {
    if (!data.text) {
      throw new StorageError(422, { errors: [{ pointer: '/text', keyword: 'minLength', message: 'is too short' }] });
    }
    docs.push({ id: String(docs.length + 1), version: 1, data });
  },
};

let server;
let url;
const quiet = { warn() {}, error() {} };

before(async () => {
  server = createServer(createHandler({ name: manifest.name, verify, storage, log: quiet }));
  await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
  url = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((resolve) => { server.close(resolve); }));

const post = (text, headers = AUTH) => fetch(`${url}/items`, {
  method: 'POST', redirect: 'manual', headers: { ...headers, 'Content-Type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ text }),
});

test('health answers 200', async () => {
  assert.equal((await fetch(`${url}/health`)).status, 200);
});

test("a request without the core's token is refused", async () => {
  assert.equal((await fetch(`${url}/items`)).status, 401);
  assert.equal((await post('x', {})).status, 401);
});

test('an item added through the form is listed, escaped', async () => {
  const res = await post('<b>milk</b>');
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), '/items');
  const page = await (await fetch(`${url}/items`, { headers: AUTH })).text();
  assert.ok(page.includes('&lt;b&gt;milk&lt;/b&gt;') && !page.includes('<b>milk'));
});

test('an invalid item shows what to fix', async () => {
  const res = await post(' ');
  assert.equal(res.status, 422);
  assert.match(await res.text(), /\/text/);
});

test('the manifest declares the routes served', () => {
  assert.match(manifest.plugin_id, /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/);
  const [menu] = manifest.menu_items;
  assert.deepEqual([menu.view.method, menu.view.path], ['GET', '/items']);
  assert.deepEqual(menu.actions.map((a) => [a.method, a.path]), [['POST', '/items']]);
});
