// Tasks: a demo extframework plugin in plain Node.js (node:http, no web framework).
//
// Contract A: serves the routes its manifest declares and verifies the request JWT on every
// call against the core's JWKS (jose). Contract B: keeps its data in the core's storage API
// with its plugin token. It registers itself with an enrolment key on first start and sends
// its manifest as an update on later starts.
//
// Environment: EXTFW_CORE_URL, EXTFW_ENROLMENT_KEY, PLUGIN_TOKEN_FILE, PORT, PLUGIN_HOST.

import { createServer } from 'node:http';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const PLUGIN_ID = process.env.PLUGIN_ID || 'tasks';
const VERSION = '1.0.0';
const CORE = (process.env.EXTFW_CORE_URL || 'http://127.0.0.1:5000').replace(/\/+$/, '');
const HOST = process.env.PLUGIN_HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 9102);
const TOKEN_FILE = process.env.PLUGIN_TOKEN_FILE || 'instance/tasks.token';
const BASE_URL = `http://${HOST}:${PORT}`;

const JWKS = createRemoteJWKSet(new URL(`${CORE}/.well-known/jwks.json`), {
  cooldownDuration: 5000,
  cacheMaxAge: 300000,
});

const manifest = {
  plugin_id: PLUGIN_ID,
  name: 'Tasks',
  version: VERSION,
  base_url: BASE_URL,
  menu_items: [
    {
      id: 'tasks',
      label: 'Tasks',
      view: { method: 'GET', path: '/tasks' },
      actions: [
        { id: 'create', method: 'POST', path: '/tasks' },
        { id: 'toggle', method: 'PATCH', path: '/tasks/:id' },
        { id: 'delete', method: 'DELETE', path: '/tasks/:id' },
      ],
    },
    { id: 'about', label: 'About tasks', view: { method: 'GET', path: '/about', mode: 'iframe' } },
  ],
  data_schemas: [
    {
      collection: 'tasks',
      schema: {
        type: 'object',
        properties: {
          title: { type: 'string', minLength: 1, maxLength: 200 },
          done: { type: 'boolean' },
        },
        required: ['title', 'done'],
        additionalProperties: false,
      },
      indexes: [{ fields: ['done'] }],
    },
  ],
};

const calls = {};
let token = readToken();

function readToken() {
  try {
    return readFileSync(TOKEN_FILE, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

function escapeHtml(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

async function verify(req) {
  const [scheme, jwt] = (req.headers.authorization || '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !jwt) throw new Error('missing bearer request JWT');
  const { payload } = await jwtVerify(jwt, JWKS, {
    issuer: CORE,
    audience: PLUGIN_ID,
    algorithms: ['RS256', 'ES256'],
    requiredClaims: ['sub', 'tenant', 'role', 'scopes', 'iat', 'exp', 'jti'],
    clockTolerance: 5,
  });
  return payload;
}

// Every refusal from the core is problem+json whose `type` names its kind (docs/errors.md).
const PROBLEM_TYPE = 'urn:extframework:problem:';

function problemKind(body) {
  const type = body && typeof body.type === 'string' ? body.type : '';
  return type.startsWith(PROBLEM_TYPE) ? type.slice(PROBLEM_TYPE.length) : null;
}

function describeProblem(body) {
  const fields = (body?.errors || []).map((e) => `${e.pointer || '/'}: ${e.message || ''}`);
  const diff = (body?.diff || []).map((c) => `${c.collection} ${c.path}: ${c.kind}`);
  return [body?.detail || '', ...fields, ...diff].filter(Boolean).join('; ');
}

async function storage(method, path, caller, body) {
  const headers = { Authorization: `Bearer ${token}`, 'X-Tenant-ID': caller.tenant };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${CORE}/api/storage${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const data = res.status === 204 ? null : await res.json();
  if (!res.ok) {
    const err = new Error(data?.detail || `storage answered ${res.status}`);
    err.status = res.status;
    err.problem = data;
    err.kind = problemKind(data);
    throw err;
  }
  return data;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw Object.assign(new Error('form too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', ...headers });
  res.end(html);
}

async function tasksView(caller, errors = []) {
  const { items } = await storage('GET', '/tasks?sort=title&limit=500', caller);
  const canWrite = caller.scopes.includes('actions:write');
  const rows = items.map((t) => `
    <li data-task="${escapeHtml(t.id)}" class="${t.data.done ? 'done' : 'open'}">
      <span>${t.data.done ? '✔ ' : ''}${escapeHtml(t.data.title)}</span>
      ${canWrite ? `
      <form method="patch" action="/tasks/${encodeURIComponent(t.id)}">
        <input type="hidden" name="done" value="${t.data.done ? 'false' : 'true'}">
        <button type="submit" class="xf-button">${t.data.done ? 'Reopen' : 'Done'} ${escapeHtml(t.data.title)}</button>
      </form>
      <form method="delete" action="/tasks/${encodeURIComponent(t.id)}">
        <button type="submit" class="xf-button xf-button--danger">Delete ${escapeHtml(t.data.title)}</button>
      </form>` : ''}
    </li>`).join('');
  return `<h1>Tasks</h1>
    <p class="xf-muted">For ${escapeHtml(caller.name)} in tenant ${escapeHtml(caller.tenant)}.</p>
    ${items.length ? `<ul class="tasks">${rows}</ul>` : '<div class="xf-empty"><p>Nothing to do.</p></div>'}
    ${canWrite ? `<h2>New task</h2>
    ${errors.map((e) => `<p class="xf-notice xf-notice--error" role="alert">${escapeHtml(e)}</p>`).join('')}
    <form method="post" action="/tasks" class="xf-form xf-form--inline">
      <label for="task-title">Task</label>
      <input id="task-title" name="title">
      <button type="submit" class="xf-button xf-button--primary">Add task</button>
    </form>` : ''}`;
}

const ABOUT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>About</title></head>
<body><h1>About Tasks</h1><p>This view is shown in a sandboxed iframe: it runs in an opaque
origin and cannot reach the shell.</p></body></html>`;

async function route(req, res, caller) {
  const url = new URL(req.url, BASE_URL);
  const taskMatch = url.pathname.match(/^\/tasks\/([^/]+)$/);
  if (req.method === 'GET' && url.pathname === '/tasks') {
    return send(res, 200, await tasksView(caller));
  }
  if (req.method === 'GET' && url.pathname === '/about') return send(res, 200, ABOUT);
  if (req.method === 'POST' && url.pathname === '/tasks') {
    const form = await readForm(req);
    try {
      await storage('POST', '/tasks', caller, { title: (form.get('title') || '').trim(), done: false });
    } catch (err) {
      if (err.status !== 422) throw err;
      const errors = (err.problem?.errors || []).map((e) => `${(e.pointer || '').slice(1)}: ${e.message || ''}`);
      return send(res, 422, await tasksView(caller, errors.length ? errors : [err.message]));
    }
    return send(res, 303, '', { Location: '/tasks' });
  }
  if (taskMatch && req.method === 'PATCH') {
    const form = await readForm(req);
    await storage('PATCH', `/tasks/${encodeURIComponent(decodeURIComponent(taskMatch[1]))}`, caller,
      { done: form.get('done') === 'true' });
    return send(res, 303, '', { Location: '/tasks' });
  }
  if (taskMatch && req.method === 'DELETE') {
    try {
      await storage('DELETE', `/tasks/${encodeURIComponent(decodeURIComponent(taskMatch[1]))}`, caller);
    } catch (err) {
      if (err.status !== 404) throw err;
    }
    return send(res, 303, '', { Location: '/tasks' });
  }
  return send(res, 404, '<p>Not here.</p>');
}

const server = createServer(async (req, res) => {
  const path = new URL(req.url, BASE_URL).pathname;
  if (req.method === 'GET' && path === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end('{"status":"ok"}');
  }
  if (req.method === 'GET' && path === '/stats') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify(calls));
  }
  let caller;
  try {
    caller = await verify(req);
  } catch (err) {
    console.warn(`refused ${req.method} ${path}: ${err.message}`);
    return send(res, 401, `<p>Not from the core: ${escapeHtml(err.message)}</p>`);
  }
  const key = `${req.method} ${path.replace(/^\/tasks\/[^/]+$/, '/tasks/:id')}`;
  calls[key] = (calls[key] || 0) + 1;
  try {
    await route(req, res, caller);
  } catch (err) {
    console.error(`${req.method} ${path} failed: ${err.message}`);
    send(res, err.status === 413 ? 413 : 500, '<p>Tasks ran into an error.</p>');
  }
});

async function enrol(attempt = 0) {
  const api = `${CORE}/api/registry/plugins`;
  try {
    if (token) {
      const res = await fetch(`${api}/${PLUGIN_ID}`, {
        method: 'PUT',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(manifest),
      });
      const body = await res.json().catch(() => ({}));
      const kind = problemKind(body);
      // Branch on the problem type, never on status or prose: only "installed at exactly
      // this version" means nothing to do. A breaking-change (declare a migration), an older
      // version or a changed manifest under the same version must stop the plugin.
      if (res.ok || (kind === 'version-not-higher' && body.current_version === VERSION)) {
        console.log(`enrolled: manifest ${VERSION} is current`);
        return;
      }
      if (res.status !== 401) {
        throw Object.assign(new Error(`update refused (${kind || res.status}): ${describeProblem(body)}`), {
          fatal: res.status < 500,
        });
      }
      console.warn('stored plugin token was refused; registering again');
    }
    const key = process.env.EXTFW_ENROLMENT_KEY;
    if (!key) throw Object.assign(new Error('no plugin token and no enrolment key'), { fatal: true });
    const res = await fetch(api, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(manifest),
    });
    const body = await res.json().catch(() => ({}));
    if (res.status !== 201) {
      throw Object.assign(new Error(`registration refused (${problemKind(body) || res.status}): ${describeProblem(body)}`), {
        fatal: res.status < 500 || res.status === 502,
      });
    }
    token = body.plugin_token;
    mkdirSync(dirname(TOKEN_FILE), { recursive: true });
    writeFileSync(TOKEN_FILE, `${token}\n`, { mode: 0o600 });
    console.log(`registered as ${PLUGIN_ID}`);
  } catch (err) {
    if (err.fatal || attempt >= 30) {
      console.error(`cannot enrol with the core: ${err.message}`);
      process.exit(1);
    }
    setTimeout(() => enrol(attempt + 1), Math.min(200 * 2 ** attempt, 2000));
  }
}

server.listen(PORT, HOST, () => {
  console.log(`serving on ${BASE_URL}`);
  enrol();
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
