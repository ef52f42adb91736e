// Drive @extframework/sdk for tests/test_sdk_node.py: read a scenario as JSON on stdin, run it
// against the core it names, print the outcome as JSON on stdout.

import {
  createVerifier, StorageClient, registerOrUpdate, rotateToken, DEFAULT_LEEWAY_S,
} from '../../sdk-node/index.mjs';

const input = JSON.parse(await new Promise((resolve) => {
  let data = '';
  process.stdin.on('data', (chunk) => { data += chunk; });
  process.stdin.on('end', () => resolve(data));
}));

const refusal = (err) => ({ name: err.name, message: err.message, status: err.status ?? null, kind: err.kind ?? null, index: err.index ?? null, errors: err.errors ?? null });

async function outcome(promise) {
  try {
    return { ok: await promise };
  } catch (err) {
    return { error: refusal(err) };
  }
}

const scenarios = {
  async verify({
    core, plugin_id: pluginId, jwks_url: jwksUrl, cooldown_ms: cooldownMs, cache_max_age_ms: cacheMaxAgeMs, headers,
  }) {
    const verify = createVerifier({ coreUrl: core, pluginId, jwksUrl, cooldownMs, cacheMaxAgeMs });
    const results = [];
    for (const header of headers) {
      results.push(await outcome(verify(header).then((c) => ({ userId: c.userId, tenant: c.tenant, canWrite: c.can('actions:write') }))));
    }
    return { leeway: DEFAULT_LEEWAY_S, results };
  },

  async storage({ core, token, collection, tenant }) {
    const storage = new StorageClient(core, { token });
    for (let n = 0; n < 5; n += 1) await storage.create(collection, { title: `n${n}`, count: n }, { tenant });
    const pages = [];
    for await (const page of storage.pages(collection, { tenant, sort: 'count', limit: 2 })) {
      pages.push(page.map((d) => d.data.count));
    }
    const iterated = [];
    for await (const doc of storage.iterate(collection, { tenant, sort: '-count', limit: 2 })) iterated.push(doc.data.count);
    const doc = await storage.create(collection, { title: 'x' }, { tenant });
    await storage.patch(collection, doc.id, { count: 1 }, { tenant, ifMatch: doc.version });
    const stale = await outcome(storage.patch(collection, doc.id, { count: 2 }, { tenant, ifMatch: doc.version }));
    const batch = await outcome(storage.batch(collection, [{ op: 'create', data: { title: 'b' } }, { op: 'delete', id: 'missing' }], { tenant }));
    const good = await storage.batch(collection, [{ op: 'create', data: { title: 'c' } }, { op: 'delete', id: doc.id }], { tenant });
    const invalid = await outcome(storage.create(collection, { count: 'many' }, { tenant }));
    return { pages, iterated, stale, batch, good, invalid };
  },

  async enrol({ core, manifests, token_file: tokenFile, enrolment_key: enrolmentKey }) {
    const results = [];
    for (const manifest of manifests) {
      results.push(await outcome(registerOrUpdate(core, manifest, { tokenFile, enrolmentKey, attempts: 1, log: {} })));
    }
    return results;
  },

  async rotate({ core, plugin_id: pluginId, token_file: tokenFile, tenant, collection }) {
    const fresh = await rotateToken(core, pluginId, { tokenFile, revokeNow: true });
    const storage = new StorageClient(core, { tokenFile });
    const created = await storage.create(collection, { title: 'after rotation' }, { tenant });
    return { fresh, created: created.data.title };
  },
};

process.stdout.write(JSON.stringify(await scenarios[input.scenario](input)));
