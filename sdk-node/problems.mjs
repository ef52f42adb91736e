// The core's problem+json answers (RFC 9457): branch on `kind`, never on the prose.
//
// Every refusal names its kind in `type` as `urn:extframework:problem:{kind}`; the core's
// docs/errors.md lists them. Field errors are `{pointer, keyword, message}`.

export const TYPE_PREFIX = 'urn:extframework:problem:';

/** The kind a problem's `type` names, or null for a body that is not the core's. */
export function kindOf(problem) {
  const type = problem && typeof problem.type === 'string' ? problem.type : '';
  return type.startsWith(TYPE_PREFIX) ? type.slice(TYPE_PREFIX.length) : null;
}

/** One line for a log: the detail, each field error, and each change of a refused diff. */
export function describe(problem) {
  const fields = (problem?.errors || []).map((e) => `${e.pointer || '/'}: ${e.message || ''}`);
  const diff = (problem?.diff || []).map((c) => `${c.collection} ${c.path}: ${c.kind}`);
  return [problem?.detail || problem?.title || '', ...fields, ...diff].filter(Boolean).join('; ');
}

/** A refusal from the core: `status`, its problem+json body as `problem`, `type`, `kind`, `errors`. */
export class ProblemError extends Error {
  constructor(message, status = null, problem = {}) {
    super(message);
    this.name = 'ProblemError';
    this.status = status;
    this.problem = problem || {};
  }

  get type() { return this.problem.type ?? null; }
  get kind() { return kindOf(this.problem); }
  get errors() { return Array.isArray(this.problem.errors) ? this.problem.errors : []; }
  /** In a refused batch: the index of the operation that failed (nothing was applied). */
  get index() { return this.problem.index ?? null; }
}

/** The body of a response as a problem (a `detail` of its text if it is not JSON). */
export async function problemOf(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    return body && typeof body === 'object' && !Array.isArray(body) ? body : { status: res.status, detail: body };
  } catch {
    return { status: res.status, detail: text.slice(0, 300) };
  }
}
