// Tasks: a demo extframework plugin in plain Node.js (node:http, no web framework).
//
// Contract A: serves the routes its manifest declares and verifies the request JWT on every
// call against the core's JWKS. Contract B: keeps its data in the core's storage API with its
// plugin token. It registers itself with an enrolment key on first start and sends its
// manifest as an update on later starts. @extframework/sdk (sdk-node/) does the contract's
// part of each.
//
// Environment: EXTFW_CORE_URL, EXTFW_ENROLMENT_KEY, PLUGIN_TOKEN_FILE, PORT, PLUGIN_HOST.

import { createServer } from 'node:http';
import {
  createVerifier, escapeHtml, readForm, registerOrUpdate, StorageClient,
} from '@extframework/sdk';

const PLUGIN_ID = process.env.PLUGIN_ID || 'tasks';
const VERSION = '1.0.0';
const CORE = (process.env.EXTFW_CORE_URL || 'http://127.0.0.1:5000').replace(/\/+$/, '');
const HOST = process.env.PLUGIN_HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 9102);
const TOKEN_FILE = process.env.PLUGIN_TOKEN_FILE || 'instance/tasks.token';
const BASE_URL = `http://${HOST}:${PORT}`;

const verify = createVerifier({ coreUrl: CORE, pluginId: PLUGIN_ID });
const storage = new StorageClient(CORE, { tokenFile: TOKEN_FILE });

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

function send(res, status, html, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', ...headers });
  res.end(html);
}

// The storage API's field errors ({pointer, keyword, message}) in plain words, by form field
// ('' for the form as a whole), so each is shown beside its field.
const LABELS = { title: 'Task' };

function plainWords(error, schema) {
  const field = (error.pointer || '').split('/')[1] || '';
  const label = LABELS[field] || field || 'This form';
  const rule = (schema.properties || {})[field] || {};
  if (error.keyword === 'required' || (error.keyword === 'minLength' && rule.minLength === 1)) {
    return [field, `${label} is required.`];
  }
  if (error.keyword === 'maxLength') return [field, `${label} can be at most ${rule.maxLength} characters long.`];
  if (!(field in LABELS)) return ['', `${label}: ${error.message || 'is not valid'}.`];
  return [field, `${label} is not valid: ${error.message || ''}.`];
}

function formErrors(err, schema) {
  const errors = {};
  for (const e of err.errors || []) {
    const [field, sentence] = plainWords(e, schema);
    errors[field] = errors[field] ? `${errors[field]} ${sentence}` : sentence;
  }
  return Object.keys(errors).length ? errors : { '': err.message };
}

function invalid(field, errors) {
  return errors[field] ? ` aria-invalid="true" aria-describedby="${field}-error"` : '';
}

function fieldError(field, errors) {
  return errors[field] ? `<p id="${field}-error" class="field-error">${escapeHtml(errors[field])}</p>` : '';
}

async function tasksView(caller, errors = {}, draft = {}) {
  const { items } = await storage.query('tasks', { tenant: caller.tenant, sort: 'title', limit: 500 });
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
    ${errors[''] ? `<p class="xf-notice xf-notice--error" role="alert">${escapeHtml(errors[''])}</p>` : ''}
    <form method="post" action="/tasks" class="xf-form xf-form--inline">
      <label for="task-title">Task</label>
      <input id="task-title" name="title" value="${escapeHtml(draft.title || '')}"${invalid('title', errors)}>
      ${fieldError('title', errors)}
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
      await storage.create('tasks', { title: (form.get('title') || '').trim(), done: false }, { tenant: caller.tenant });
    } catch (err) {
      if (err.status !== 422) throw err;
      const schema = manifest.data_schemas[0].schema;
      // What the person typed stays in the form.
      return send(res, 422, await tasksView(caller, formErrors(err, schema), { title: form.get('title') }));
    }
    return send(res, 303, '', { Location: '/tasks' });
  }
  if (taskMatch && req.method === 'PATCH') {
    const form = await readForm(req);
    await storage.patch('tasks', decodeURIComponent(taskMatch[1]), { done: form.get('done') === 'true' },
      { tenant: caller.tenant });
    return send(res, 303, '', { Location: '/tasks' });
  }
  if (taskMatch && req.method === 'DELETE') {
    try {
      await storage.delete('tasks', decodeURIComponent(taskMatch[1]), { tenant: caller.tenant });
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
    caller = await verify(req.headers.authorization);
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

server.listen(PORT, HOST, () => {
  console.log(`serving on ${BASE_URL}`);
  // Registers with the enrolment key, or updates with the stored token. A refusal (a breaking
  // change without a migration, an older version, a changed manifest under the same version)
  // stops the plugin: it must not run against schemas the core refused.
  registerOrUpdate(CORE, manifest, { tokenFile: TOKEN_FILE, enrolmentKey: process.env.EXTFW_ENROLMENT_KEY })
    .then(() => console.log(`enrolled: manifest ${VERSION} is current`))
    .catch((err) => {
      console.error(`cannot enrol with the core (${err.kind || err.status || 'unreachable'}): ${err.message}`);
      process.exit(1);
    });
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
