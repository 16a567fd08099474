// page-events.js — event metadata (PostgreSQL): one event by id with its
// status history, and lists by type / status / time, page by page.
import { api, S } from './api.js';
import { h, clear, errorBox, field, table, pageHeading, dl, fmtTime, localToIso } from './ui.js';

const STATUSES = ['', 'PENDING', 'PROCESSING', 'COMPLETED', 'RETRYING', 'DEAD_LETTERED', 'IGNORED', 'PURGED'];

// Every transition the metadata kept (oldest first, the newest 20), after
// the entry's arrival; a row from before the history has only its current
// status to show.
function statusHistory(e) {
  const hist = e.status_history || [];
  const rows = [h('tr', {}, h('td', {}, fmtTime(e.created_at)), h('td', {}, 'added to the stream'), h('td', { class: 'num' }, '—'), h('td', {}, '—'))];
  for (const x of hist)
    rows.push(h('tr', {}, h('td', {}, fmtTime(x.at)), h('td', {}, x.status),
      h('td', { class: 'num' }, String(x.attempts ?? '—')), h('td', {}, x.error || '—')));
  if (!hist.length)
    rows.push(h('tr', {}, h('td', {}, fmtTime(e.status_at)), h('td', {}, `${e.status} (no earlier transitions recorded)`),
      h('td', { class: 'num' }, String(e.attempts ?? '—')), h('td', {}, e.last_error || '—')));
  return h('div', { id: 'status-history' },
    table(`Status history of event ${e.id}, oldest first`, ['Time', 'Status', 'Attempts', 'Error'], rows));
}

export default {
  title: 'Events',
  render(root) {
    const idInput = h('input', { name: 'id', required: true, autocomplete: 'off' });
    const one = h('div', { id: 'event-one' });
    const lookup = h('form', { role: 'search', 'aria-label': 'Look up an event', class: 'inline', onsubmit: async (ev) => {
      ev.preventDefault();
      const id = idInput.value.trim();
      clear(one, h('p', { role: 'status' }, 'Loading…'));
      try {
        const e = await api('GET', `/api/v1/events/${encodeURIComponent(id)}`, { shape: S.event });
        const outcomes = e.handler_outcomes && typeof e.handler_outcomes === 'object'
          ? Object.entries(e.handler_outcomes).map(([k, v]) => `${k}: ${v}`).join(', ') : '—';
        clear(one, h('section', { class: 'card', 'aria-labelledby': 'event-h' }, h('h2', { id: 'event-h' }, `Event ${e.id}`),
          dl([['Type', e.type], ['Tenant', e.tenant], ['Status', e.status], ['Attempts', String(e.attempts ?? '—')],
            ['Last error', e.last_error || 'none'], ['Handler outcomes', outcomes], ['Stream id', e.stream_id],
            ['Source', e.source], ['Correlation id', e.correlation_id]]),
          h('h3', {}, 'Status history'),
          statusHistory(e)));
      } catch (err) { clear(one, errorBox(err)); }
    } }, field('Event id', idInput), h('button', { type: 'submit', class: 'primary' }, 'Look up'));

    const type = h('input', { name: 'type' });
    const status = h('select', { name: 'status' }, STATUSES.map((s) => h('option', { value: s }, s || 'any')));
    const since = h('input', { name: 'since', type: 'datetime-local', step: '1' });
    const until = h('input', { name: 'until', type: 'datetime-local', step: '1' });
    const out = h('div', { id: 'event-list' });
    const note = h('p', { role: 'status' });
    let cursors = [], cursor = null, q = {};
    const prev = h('button', { type: 'button', class: 'secondary', disabled: true, onclick: () => { cursor = cursors.pop() ?? null; load(); } }, 'Previous page');
    const next = h('button', { type: 'button', class: 'secondary', disabled: true, onclick: () => { cursors.push(cursor); cursor = next.dataset.cursor; load(); } }, 'Next page');
    async function load() {
      note.textContent = 'Loading…';
      try {
        const r = await api('GET', '/api/v1/events', { query: Object.assign({ limit: 50, cursor }, q), shape: S.eventList });
        note.textContent = `${r.count} events on page ${cursors.length + 1}.`;
        clear(out, r.count ? table(`Events, page ${cursors.length + 1}`, ['Id', 'Type', 'Tenant', 'Status', 'Attempts', 'Created'],
          r.events.map((e) => h('tr', {}, h('td', { class: 'mono' }, e.id), h('td', {}, e.type), h('td', {}, e.tenant ?? '—'),
            h('td', {}, e.status), h('td', { class: 'num' }, String(e.attempts ?? '—')), h('td', {}, fmtTime(e.created_at))))) : null);
        prev.disabled = !cursors.length;
        next.disabled = !r.next_cursor;
        next.dataset.cursor = r.next_cursor || '';
      } catch (err) { note.textContent = ''; clear(out, errorBox(err)); }
    }
    const listForm = h('form', { class: 'filters', 'aria-label': 'List events', onsubmit: (ev) => {
      ev.preventDefault();
      const s = localToIso(since.value), u = localToIso(until.value);
      if (s === null || u === null) { clear(out, errorBox({ message: 'A time is not a valid date and time.' })); return; }
      if (s && u && s > u) { clear(out, errorBox({ message: 'Until must be after since.' })); until.focus(); return; }
      q = { type: type.value.trim(), status: status.value, since: s, until: u };
      cursors = []; cursor = null;
      load();
    } }, h('fieldset', {}, h('legend', {}, 'List events'),
      h('div', { class: 'grid' }, field('Type', type), field('Status', status), field('Since (UTC)', since), field('Until (UTC)', until)),
      h('button', { type: 'submit', class: 'primary' }, 'List')));
    root.append(pageHeading('Events'), lookup, one, listForm, note, out,
      h('nav', { class: 'pager', 'aria-label': 'Event pages' }, prev, next));
    return null;
  },
};
