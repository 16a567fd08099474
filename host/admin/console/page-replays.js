// page-replays.js — replay jobs: a form checked before it is sent (time
// range, type patterns, tenant for "*" operators, rate), the job's live
// progress with cancel (and, on a partitioned stream, each partition's),
// and the list of jobs.
import { api, S } from './api.js';
import { h, clear, errorBox, field, table, pageHeading, fmtTime, localToIso, confirmDialog, announce, fmtNum } from './ui.js';

const TYPE_RE = /^(\*\*|\*|[a-z0-9_-]+)(\.(\*\*|\*|[a-z0-9_-]+))*$/;
const DONE = ['completed', 'failed', 'cancelled'];

export default {
  title: 'Replays',
  render(root, ctx) {
    const op = ctx.can('operator');
    const now = new Date();
    const local = (d) => d.toISOString().slice(0, 19);
    const from = h('input', { name: 'from', type: 'datetime-local', step: '1', required: true, value: local(new Date(now - 3600e3)) });
    const to = h('input', { name: 'to', type: 'datetime-local', step: '1', required: true, value: local(new Date(+now + 60e3)) });
    const types = h('input', { name: 'types', placeholder: 'order.**, user.signup' });
    const tenant = ctx.session.tenant === '*' ? h('input', { name: 'tenant', placeholder: 'every tenant' }) : null;
    const rate = h('input', { name: 'rate', type: 'number', min: '1', max: '1000000', inputmode: 'numeric' });
    const formMsg = h('div', { id: 'replay-form-msg' });
    const jobEl = h('div', { id: 'replay-job' });
    const listEl = h('div', { id: 'replay-list' });
    let timer = null, alive = true;

    function invalid(input, text) {
      input.setAttribute('aria-invalid', 'true');
      clear(formMsg, errorBox({ message: text }));
      input.focus();
      return null;
    }
    function validate() {
      for (const i of [from, to, types, rate, tenant]) if (i) i.removeAttribute('aria-invalid');
      const f = localToIso(from.value), t = localToIso(to.value);
      if (!f) return invalid(from, 'From: give a date and time.');
      if (!t) return invalid(to, 'To: give a date and time.');
      if (f >= t) return invalid(to, 'To must be after From.');
      const body = { from: f, to: t };
      const ts = types.value.split(',').map((s) => s.trim()).filter(Boolean);
      if (ts.length > 16) return invalid(types, 'Types: at most 16 patterns.');
      const bad = ts.find((p) => !TYPE_RE.test(p));
      if (bad) return invalid(types, `Types: '${bad}' is not a type pattern (lowercase dot-separated segments, * for one segment, ** for any).`);
      if (ts.length) body.types = ts;
      if (rate.value !== '') {
        const r = Number(rate.value);
        if (!Number.isInteger(r) || r < 1 || r > 1000000) return invalid(rate, 'Rate: a whole number of events per second from 1 to 1,000,000.');
        body.rate = r;
      }
      if (tenant && tenant.value.trim()) body.tenant = tenant.value.trim();
      return body;
    }

    // A job on a partitioned stream: one row per partition, read in turn.
    function partitionsTable(job) {
      if (!Array.isArray(job.partitions)) return null;
      const n = job.partitions.filter((p) => p.status === 'completed').length;
      return table(`Partitions of replay ${job.id}: ${n} of ${job.partitions.length} completed`,
        ['Partition', 'Status', 'Progress', 'Failed', 'Last entry', 'Warning'],
        job.partitions.map((p) => h('tr', {},
          h('td', { class: 'num' }, String(p.partition)), h('td', {}, p.status),
          h('td', { class: 'num' }, `${fmtNum(p.processed + p.skipped + p.failed)} / ${fmtNum(p.total)}`),
          h('td', { class: 'num' }, fmtNum(p.failed)),
          h('td', { class: 'mono' }, p.position ?? '—'), h('td', {}, p.warning ?? ''))));
    }

    function showJob(job) {
      const total = job.total ?? 0, done = (job.processed ?? 0) + (job.skipped ?? 0) + (job.failed ?? 0);
      const running = !DONE.includes(job.status);
      const cancel = running && op ? h('button', { type: 'button', class: 'danger', id: 'replay-cancel', onclick: (ev) => cancelJob(job, ev.currentTarget) }, 'Cancel replay') : null;
      const keep = jobEl.contains(document.activeElement);
      clear(jobEl, h('section', { class: 'card', 'aria-labelledby': 'job-h' },
        h('h2', { id: 'job-h' }, `Replay ${job.id}`),
        h('label', { for: 'replay-progress' }, `Status: ${job.status}`),
        h('progress', { id: 'replay-progress', max: String(total || 1), value: String(done) }),
        h('p', { id: 'replay-state' }, `${fmtNum(job.processed ?? 0)} replayed, ${fmtNum(job.skipped ?? 0)} skipped, ${fmtNum(job.failed ?? 0)} failed of ${total ? fmtNum(total) : 'an unknown number'}.${job.error ? ' Error: ' + job.error : ''}${job.warning ? ' Warning: ' + job.warning : ''}`),
        partitionsTable(job),
        cancel));
      if (keep && cancel) cancel.focus();
      if (running) timer = setTimeout(() => poll(job.id), 1000);
      else announce(`Replay ${job.status}.`);
    }
    async function poll(id) {
      timer = null;
      if (!alive) return;
      try { showJob(await api('GET', `/api/v1/replays/${encodeURIComponent(id)}`, { shape: S.replay })); }
      catch (e) { clear(jobEl, errorBox(e)); }
    }
    async function cancelJob(job, trigger) {
      const ok = await confirmDialog({
        title: 'Cancel this replay?',
        body: [h('p', {}, `Replay ${job.id} stops at its next check; events already replayed stay delivered.`)],
        confirmLabel: 'Cancel replay', danger: true, trigger,
      });
      if (!ok) return;
      if (timer) { clearTimeout(timer); timer = null; }
      try { showJob(await api('DELETE', `/api/v1/replays/${encodeURIComponent(job.id)}`, { shape: S.replay })); }
      catch (e) { clear(jobEl, errorBox(e)); poll(job.id); }
      loadList();
    }
    async function loadList() {
      try {
        const r = await api('GET', '/api/v1/replays', { query: { limit: 20 }, shape: S.replayList });
        clear(listEl, r.count ? table('Recent replays', ['Id', 'Status', 'Tenant', 'Types', 'Progress', 'Created'],
          r.replays.map((j) => h('tr', {},
            h('td', {}, h('button', { type: 'button', class: 'link mono', onclick: () => { if (timer) clearTimeout(timer); showJob(j); } }, j.id)),
            h('td', {}, j.status), h('td', {}, j.tenant ?? 'every tenant'),
            h('td', {}, Array.isArray(j.types) && j.types.length ? j.types.join(', ') : 'every type'),
            h('td', { class: 'num' }, `${fmtNum(j.processed ?? 0)} / ${j.total === null || j.total === undefined ? '?' : fmtNum(j.total)}`),
            h('td', {}, fmtTime(j.created_at))))) : h('p', {}, 'No replay jobs yet.'));
      } catch (e) { clear(listEl, errorBox(e)); }
    }

    const form = op ? h('form', { class: 'filters', 'aria-label': 'Start a replay', novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      const body = validate();
      if (!body) return;
      clear(formMsg);
      try {
        const job = await api('POST', '/api/v1/replays', { body, shape: S.replay });
        if (timer) clearTimeout(timer);
        showJob(job);
        loadList();
        announce(`Replay ${job.id} started.`);
      } catch (e) { clear(formMsg, errorBox(e)); }
    } }, h('fieldset', {}, h('legend', {}, 'Start a replay'),
      h('div', { class: 'grid' },
        field('From (UTC)', from), field('To (UTC)', to),
        field('Types', types, 'comma-separated patterns; empty = every type'),
        tenant ? field('Tenant', tenant, 'empty = every tenant') : null,
        field('Rate (events/s)', rate, 'empty = unlimited')),
      h('button', { type: 'submit', class: 'primary' }, 'Start replay'), formMsg)) : null;
    root.append(pageHeading('Replays'), form, jobEl, h('h2', {}, 'Jobs'), listEl);
    loadList();
    return () => { alive = false; if (timer) clearTimeout(timer); };
  },
};
