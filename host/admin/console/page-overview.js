// page-overview.js — the health of the bus at a glance: throughput, lag,
// pending, oldest pending age, DLQ fill and failure rate from
// GET /api/v1/stats, Redis / PostgreSQL / last reload from GET /health,
// refreshed every 3 s, each with a 15-minute chart drawn here as SVG.  The
// charts start from the server's history (GET /api/v1/stats/history, one
// point a period), so they show the last quarter hour from the first look.
import { api, checkShape } from './api.js';
import { h, clear, svg, errorBox, fmtNum, fmtAge, pageHeading, fmtTime } from './ui.js';

const WINDOW_MS = 15 * 60 * 1000;
const PERIOD_MS = 3000;
// Samples survive page changes (not reloads): the charts keep their past.
const samples = [];
let lastCounts = null;

const STATS_SHAPE = {
  tenant: '?string',
  events: '?any',
  throughput: '?any',
  consumer_group: { lag: '?number', pending: '?number', oldest_pending_age_s: '?number' },
  dlq: { entries: '?number', capacity: '?number', ratio: '?number' },
};
const COUNTS_SHAPE = { completed: 'integer', dead_lettered: 'integer', retrying: 'integer', handler_outcomes: 'any' };
const HISTORY_SHAPE = {
  tenant: '?string', period_s: 'number',
  points: [{
    at: 'string', per_s: '?number', failure_ratio: '?number', lag: '?number', pending: '?number',
    oldest_pending_age_s: '?number', dlq_ratio: '?number',
  }],
};
const HEALTH_SHAPE = {
  status: 'string',
  redis: { reachable: 'boolean', last_error: '?string', unreachable_ms: '?number' },
  reload: { last_ok: 'boolean', status: 'string', last_error: '?string' },
  postgres: '?any',
  dlq: { length: '?number', capacity: '?number', level: '?string' },
};

const METRICS = [
  { key: 'throughput', label: 'Throughput', fmt: (v) => `${fmtNum(v, 1)} events/s` },
  { key: 'lag', label: 'Lag', fmt: (v) => `${fmtNum(v)} entries` },
  { key: 'pending', label: 'Pending', fmt: (v) => `${fmtNum(v)} entries` },
  { key: 'oldest', label: 'Oldest pending', fmt: (v) => fmtAge(v * 1000) },
  { key: 'dlq', label: 'DLQ fill', fmt: (v) => `${fmtNum(v * 100, 1)} %` },
  { key: 'failure', label: 'Failure rate', fmt: (v) => `${fmtNum(v * 100, 1)} %` },
];

// A sparkline of one metric over the window: a polyline, the max labelled.
function chart(metric, points, now) {
  const W = 240, H = 60;
  const vals = points.map((p) => p[metric.key]).filter((v) => typeof v === 'number');
  const max = Math.max(1e-9, ...vals);
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'spark', role: 'img', 'aria-label':
    `${metric.label} over the last 15 minutes: ${vals.length} samples, highest ${metric.fmt(vals.length ? max : 0)}` });
  s.append(svg('line', { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: 'axis' }));
  const xy = points.filter((p) => typeof p[metric.key] === 'number').map((p) => {
    const x = W - ((now - p.t) / WINDOW_MS) * W;
    const y = H - 2 - (p[metric.key] / max) * (H - 6);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  if (xy.length === 1) xy.unshift(`${(parseFloat(xy[0]) - 2).toFixed(1)},${xy[0].split(',')[1]}`);
  if (xy.length) s.append(svg('polyline', { points: xy.join(' '), class: 'line' }));
  return s;
}

function failureRate(counts) {
  // failures (rejections, timeouts, dead) per handler outcome since the
  // previous sample; falls back to the totals on the first one
  const o = counts.handler_outcomes || {};
  const fail = (o.reject || 0) + (o.timeout || 0) + (o.dead || 0) + (o.retry || 0);
  const all = fail + (o.ok || 0);
  let rate = all ? fail / all : 0;
  if (lastCounts) {
    const df = fail - lastCounts.fail, da = all - lastCounts.all;
    if (da > 0) rate = df / da;
    else rate = 0;
  }
  lastCounts = { fail, all };
  return rate;
}

// The server's points where the page has no sample of its own (before it
// was opened, or while another page was shown): within half a period of
// one of ours, ours is the finer.
function seed(history) {
  const near = history.period_s * 500;
  const fill = history.points.map((p) => ({
    t: Date.parse(p.at), throughput: p.per_s, lag: p.lag, pending: p.pending,
    oldest: p.oldest_pending_age_s, dlq: p.dlq_ratio, failure: p.failure_ratio,
  })).filter((p) => Number.isFinite(p.t) && !samples.some((q) => Math.abs(q.t - p.t) < near));
  samples.push(...fill);
  samples.sort((a, b) => a.t - b.t);
}

function healthTile(name, ok, detail, unknownWord = 'not configured') {
  const state = ok === true ? 'ok' : ok === false ? 'bad' : 'unknown';
  const word = ok === true ? 'OK' : ok === false ? 'FAULT' : unknownWord;
  return h('li', { class: `health ${state}` },
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    h('strong', {}, `${name}: `), h('span', { class: 'state' }, word),
    detail ? h('span', { class: 'detail' }, ` — ${detail}`) : null);
}

export default {
  title: 'Overview',
  render(root, ctx) {
    const healthEl = h('section', { 'aria-labelledby': 'health-h' }, h('h2', { id: 'health-h' }, 'Health'));
    const healthList = h('ul', { class: 'health-list', id: 'health' }, h('li', {}, 'Loading…'));
    healthEl.append(healthList);
    const errEl = h('div', { id: 'overview-error' });
    const grid = h('ul', { class: 'cards', id: 'metrics' });
    const updated = h('p', { class: 'hint', id: 'updated' });
    const tenant = ctx && ctx.session ? ctx.session.tenant : '*';
    const scope = h('p', { class: 'hint', id: 'metrics-scope' }, tenant === '*'
      ? 'Throughput and failure rate: every tenant. Lag, pending, oldest pending age and DLQ fill: the stream.'
      : `Throughput and failure rate: tenant ${tenant} only. Lag, pending, oldest pending age and DLQ fill are the stream's, shared by every tenant.`);
    root.append(pageHeading('Overview'), errEl, healthEl,
      h('section', { 'aria-labelledby': 'metrics-h' }, h('h2', { id: 'metrics-h' }, 'Last 15 minutes'), scope, updated, grid));

    let alive = true;
    let timer = null;
    let history = null; // once per visit: the charts' past
    const tick = async () => {
      timer = null;
      const errors = [];
      let health = null, stats = null;
      await Promise.all([
        api('GET', '/health', { accept: [200, 503], shape: HEALTH_SHAPE }).then((d) => { health = d; }, (e) => errors.push(e)),
        api('GET', '/api/v1/stats', { shape: STATS_SHAPE }).then((d) => { stats = d; }, (e) => errors.push(e)),
        history ? null : api('GET', '/api/v1/stats/history', { shape: HISTORY_SHAPE }).then((d) => { history = d; }, (e) => errors.push(e)),
      ]);
      if (!alive) return;
      if (history && !history.seeded) { seed(history); history.seeded = true; }
      if (stats && stats.events) {
        const e = checkShape(stats.events, COUNTS_SHAPE, 'reply.events');
        if (e) { errors.push(new Error(`Unexpected reply to GET /api/v1/stats: ${e}.`)); stats = null; }
      }
      const now = Date.now();
      if (stats) {
        const cg = stats.consumer_group, tp = stats.throughput;
        samples.push({
          t: now,
          throughput: tp && typeof tp.per_s_1m === 'number' ? tp.per_s_1m : null,
          lag: cg.lag, pending: cg.pending, oldest: cg.oldest_pending_age_s,
          dlq: stats.dlq.ratio, failure: stats.events ? failureRate(stats.events) : null,
        });
      }
      while (samples.length && samples[0].t < now - WINDOW_MS) samples.shift();
      clear(errEl, errors.map((e) => errorBox(e)));
      if (health) {
        const pg = health.postgres;
        const r = health.redis;
        clear(healthList,
          healthTile('Redis', r.reachable, r.reachable ? 'reachable' : `unreachable for ${fmtAge(r.unreachable_ms)}${r.last_error ? ': ' + r.last_error : ''}`),
          healthTile('PostgreSQL', pg ? !!pg.connected : null, pg ? (pg.connected ? 'connected' : `disconnected${pg.last_error ? ': ' + pg.last_error : ''}`) : 'postgres.url is not set'),
          healthTile('Last reload', health.reload.last_ok, health.reload.last_ok ? `generation ${health.generation ?? '?'}, ${health.reload.status}` : `failed: ${health.reload.last_error || 'see the log'}`),
          healthTile('evbusd', health.status === 'ok' ? true : health.status === 'degraded' ? null : false, `status ${health.status}`, 'DEGRADED'));
      } else {
        clear(healthList, healthTile('evbusd', false, 'no health report'));
      }
      const last = samples[samples.length - 1] || {};
      clear(grid, METRICS.map((m) => h('li', { class: 'card metric' },
        h('h3', {}, m.label),
        h('p', { class: 'value' }, typeof last[m.key] === 'number' ? m.fmt(last[m.key]) : '—'),
        chart(m, samples, now))));
      updated.textContent = `Updated ${fmtTime(new Date(now).toISOString())}, every ${PERIOD_MS / 1000} s.`;
      if (alive) timer = setTimeout(tick, PERIOD_MS);
    };
    tick();
    return () => { alive = false; if (timer) clearTimeout(timer); };
  },
};
