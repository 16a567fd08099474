// page-audit.js — the audit log (operator: its own tenant's records;
// admin: everyone's), newest first, filterable by action, time, tenant.
import { api, S } from './api.js';
import { h, clear, errorBox, field, table, pageHeading, fmtTime, localToIso } from './ui.js';

export default {
  title: 'Audit',
  role: 'operator',
  render(root, ctx) {
    const action = h('input', { name: 'action', placeholder: 'dlq.retry' });
    const since = h('input', { name: 'since', type: 'datetime-local', step: '1' });
    const until = h('input', { name: 'until', type: 'datetime-local', step: '1' });
    const tenant = ctx.can('admin') ? h('input', { name: 'tenant' }) : null;
    const note = h('p', { role: 'status' });
    const out = h('div', { id: 'audit-list' });
    let cursors = [], cursor = null, q = {};
    const prev = h('button', { type: 'button', class: 'secondary', disabled: true, onclick: () => { cursor = cursors.pop() ?? null; load(); } }, 'Previous page');
    const next = h('button', { type: 'button', class: 'secondary', disabled: true, onclick: () => { cursors.push(cursor); cursor = next.dataset.cursor; load(); } }, 'Next page');
    async function load() {
      note.textContent = 'Loading…';
      try {
        const r = await api('GET', '/api/v1/audit', { query: Object.assign({ limit: 50, cursor }, q), shape: S.auditList });
        note.textContent = r.items.length ? `${r.items.length} records on page ${cursors.length + 1}.` : 'No audit records match.';
        clear(out, r.items.length ? table(`Audit records, page ${cursors.length + 1}`, ['When', 'Token', 'Tenant', 'Action', 'Target', 'Count', 'Result'],
          r.items.map((a) => h('tr', {}, h('td', {}, fmtTime(a.at)), h('td', {}, a.token), h('td', {}, a.tenant ?? '*'),
            h('td', {}, a.action), h('td', { class: 'mono wrap' }, typeof a.target === 'string' ? a.target : JSON.stringify(a.target)),
            h('td', { class: 'num' }, a.count === null || a.count === undefined || a.count < 0 ? '—' : String(a.count)),
            h('td', {}, a.result ?? '—')))) : null);
        prev.disabled = !cursors.length;
        next.disabled = !r.next_cursor;
        next.dataset.cursor = r.next_cursor || '';
      } catch (err) { note.textContent = ''; clear(out, errorBox(err)); }
    }
    const form = h('form', { class: 'filters', 'aria-label': 'Filter the audit log', onsubmit: (ev) => {
      ev.preventDefault();
      const s = localToIso(since.value), u = localToIso(until.value);
      if (s === null || u === null) { clear(out, errorBox({ message: 'A time is not a valid date and time.' })); return; }
      q = { action: action.value.trim(), since: s, until: u, tenant: tenant ? tenant.value.trim() : '' };
      cursors = []; cursor = null;
      load();
    } }, h('fieldset', {}, h('legend', {}, 'Filters'),
      h('div', { class: 'grid' }, field('Action', action), field('Since (UTC)', since), field('Until (UTC)', until),
        tenant ? field('Tenant (* = every-tenant tokens)', tenant) : null),
      h('button', { type: 'submit', class: 'primary' }, 'Apply filters')));
    root.append(pageHeading('Audit'), form, note, out, h('nav', { class: 'pager', 'aria-label': 'Audit pages' }, prev, next));
    load();
    return null;
  },
};
