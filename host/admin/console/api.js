// api.js — the console's only way to the operator API (docs/admin-api.md).
// Every reply is checked against a shape before a page sees it; every
// failure becomes an ApiError with a message an operator can act on.

const TOKEN_KEY = 'evbus.console.token';

export function getToken() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(t) { sessionStorage.setItem(TOKEN_KEY, t); }
export function clearToken() { sessionStorage.removeItem(TOKEN_KEY); }

export class ApiError extends Error {
  // kind: network | unauthorized | forbidden | not_found | conflict |
  //       invalid | rate_limited | server | shape
  constructor(kind, message, { status = 0, field = '', body = null } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.field = field;
    this.body = body;
  }
}

// ---- shapes ---------------------------------------------------------------
// A shape is 'string' | 'number' | 'integer' | 'boolean' | 'any', with a
// leading '?' for "or null"; [shape] for an array of it; {key: shape} for
// an object (a key ending in '?' may be absent; other members are allowed).

function typeName(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v).slice(0, 30)}`;
}

export function checkShape(value, shape, path = 'reply') {
  if (typeof shape === 'string') {
    let s = shape;
    if (s.startsWith('?')) {
      if (value === null || value === undefined) return null;
      s = s.slice(1);
    }
    const ok = s === 'any' ? value !== undefined
      : s === 'integer' ? Number.isInteger(value)
      : s === 'number' ? typeof value === 'number' && Number.isFinite(value)
      : typeof value === s;
    return ok ? null : `${path} should be ${s === 'integer' ? 'an integer' : 'a ' + s}, got ${typeName(value)}`;
  }
  if (Array.isArray(shape)) {
    if (!Array.isArray(value)) return `${path} should be an array, got ${typeName(value)}`;
    for (let i = 0; i < value.length; i++) {
      const e = checkShape(value[i], shape[0], `${path}[${i}]`);
      if (e) return e;
    }
    return null;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    return `${path} should be an object, got ${typeName(value)}`;
  for (const [k, sub] of Object.entries(shape)) {
    const optional = k.endsWith('?');
    const key = optional ? k.slice(0, -1) : k;
    if (!(key in value)) {
      if (optional) continue;
      return `${path}.${key} is missing`;
    }
    const e = checkShape(value[key], sub, `${path}.${key}`);
    if (e) return e;
  }
  return null;
}

// ---- requests -------------------------------------------------------------

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {}))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

const KIND = { 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 409: 'conflict', 429: 'rate_limited' };

function describe(status, body, what) {
  const msg = body && typeof body.message === 'string' ? body.message : '';
  const field = body && typeof body.field === 'string' && body.field ? ` (${body.field})` : '';
  switch (status) {
    case 401: return 'Your token was refused (401): sign in again with a valid token.';
    case 403: return `Not allowed (403)${field}: ${msg || 'this token may not do that.'}`;
    case 404: return `Not found (404)${field}: ${msg || what + ' does not exist or is not visible to this token.'}`;
    case 409: return `Conflict (409)${field}: ${msg || 'the state changed; reload and try again.'}`;
    case 429: return `Too many requests (429): ${msg || 'wait a moment and try again.'}`;
    default:
      if (status >= 500) return `evbusd could not answer ${what} (${status}${body && body.error ? ' ' + body.error : ''}): ${msg || 'server error.'}`;
      return `The request was refused (${status})${field}: ${msg || 'invalid request.'}`;
  }
}

// api('GET', '/api/v1/dlq', {query, body, shape, accept: [200, 503]})
export async function api(method, path, opts = {}) {
  const url = path + query(opts.query);
  const what = `${method} ${path}`;
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new ApiError('network', `Cannot reach evbusd (${what}: network error). Is it running and reachable?`);
  }
  let data = null;
  const text = await res.text().catch(() => '');
  try { data = text ? JSON.parse(text) : null; } catch { data = undefined; }
  const accepted = opts.accept || [200, 201, 202];
  if (!accepted.includes(res.status)) {
    const kind = KIND[res.status] || (res.status >= 500 ? 'server' : 'invalid');
    const err = new ApiError(kind, describe(res.status, data, what),
      { status: res.status, field: data && data.field, body: data });
    if (kind === 'unauthorized') onUnauthorized(err);
    throw err;
  }
  if (data === undefined)
    throw new ApiError('shape', `Unexpected reply to ${what}: not JSON. The console and evbusd may be of different versions.`, { status: res.status });
  if (opts.shape) {
    const e = checkShape(data, opts.shape);
    if (e) throw new ApiError('shape', `Unexpected reply to ${what}: ${e}. The console and evbusd may be of different versions.`, { status: res.status, body: data });
  }
  return opts.withStatus ? { status: res.status, data } : data;
}

// ---- the shapes of the replies the console reads ----------------------------

export const S = {
  whoami: { token: 'string', roles: ['string'], tenant: 'string' },
  error: { error: 'string', message: 'string' },
  dlqItem: {
    dlq_id: 'string', event_id: '?string', type: '?string', tenant: '?string', reason: 'string',
    handlers: ['string'], attempts: '?integer', error: '?string', first_failure: '?string',
    last_failure: '?string', stream: '?string', orig_id: '?string', replay_job: '?string',
  },
  dlqJob: {
    id: 'string', state: 'string', filter: 'any', total: 'integer', done: 'integer',
    failed: 'integer', gone: 'integer', error: '?string',
  },
  dryRun: { count: 'integer', confirm: 'string', expires_at: 'string', filter: 'any' },
  event: {
    id: 'string', type: 'string', tenant: '?string', status: 'string', attempts: '?integer', created_at: '?string',
    'status_history?': [{ status: 'string', at: 'string', attempts: '?integer', error: '?string' }],
  },
  replay: {
    id: 'string', status: 'string', tenant: '?string', types: '?any', total: '?integer',
    processed: '?integer', skipped: '?integer', failed: '?integer', created_at: '?string',
    // a partitioned stream's job (migration 0011): each partition's progress
    'partitions?': [{
      partition: 'integer', status: 'string', total: 'integer', processed: 'integer',
      skipped: 'integer', failed: 'integer', position: '?string', warning: '?string',
    }],
  },
  audit: { id: 'any', at: 'string', token: 'string', tenant: '?string', action: 'string', target: '?any', count: '?integer', result: '?string' },
};
S.dlqList = { items: [S.dlqItem], next_cursor: '?string', 'total?': '?integer' };
S.dlqDetail = Object.assign({
  event: 'any', event_encoding: 'string',
  'attempt_errors?': [{ attempt: 'integer', handler: '?string', at: 'string', error: 'string' }],
}, S.dlqItem);
S.eventList = { events: [S.event], count: 'integer', next_cursor: '?string' };
S.replayList = { replays: [S.replay], count: 'integer', next_cursor: '?string' };
S.auditList = { items: [S.audit], next_cursor: '?string' };
