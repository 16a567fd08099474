// page-dlq.js — dead letters: the list (full ids, cursor pages, filters,
// search by event id), one entry's detail, retry and delete of one, and
// the bulk re-drive by filter (dry run -> confirmation naming the count
// and the filter -> live progress, cancellable).
import { api, S } from './api.js';
import { h, clear, errorBox, okBox, field, table, pageHeading, dl, jsonBlock, fmtTime,
  localToIso, confirmDialog, announce } from './ui.js';

const PAGE = 50;
// The list's state outlives a visit to a detail view.
const state = { filters: {}, cursors: [], cursor: null, flash: null };

function filterText(f) {
  const parts = Object.entries(f).filter(([, v]) => v).map(([k, v]) => `${k} = ${v}`);
  return parts.length ? parts.join(', ') : 'no filter (every dead letter this token can see)';
}

async function retryOne(item, trigger, done) {
  const ok = await confirmDialog({
    title: 'Retry this dead letter?',
    body: [h('p', {}, `Dead letter ${item.dlq_id} (event ${item.event_id ?? '?'}, type ${item.type ?? '?'}) is published again to ${item.stream ?? 'its stream'} and removed from the dead-letter queue.`)],
    confirmLabel: 'Retry', danger: false, trigger,
  });
  if (!ok) return;
  try {
    const r = await api('POST', `/api/v1/dlq/${encodeURIComponent(item.dlq_id)}/retry`, { shape: { dlq_id: 'string', stream_id: 'string' } });
    done(okBox(`Dead letter ${r.dlq_id} retried: published again as ${r.stream_id}.`));
  } catch (e) { done(errorBox(e)); }
}

async function deleteOne(item, trigger, done) {
  const ok = await confirmDialog({
    title: 'Delete this dead letter?',
    body: [h('p', {}, `Dead letter ${item.dlq_id} (event ${item.event_id ?? '?'}, type ${item.type ?? '?'}) is removed for good; its event is not delivered again. This cannot be undone.`)],
    confirmLabel: 'Delete', danger: true, trigger,
  });
  if (!ok) return;
  try {
    const r = await api('DELETE', `/api/v1/dlq/${encodeURIComponent(item.dlq_id)}`, { shape: { dlq_id: 'string', deleted: 'boolean' } });
    done(okBox(`Dead letter ${r.dlq_id} deleted.${r.warning ? ' Warning: ' + r.warning : ''}`));
  } catch (e) { done(errorBox(e)); }
}

// Every failed attempt, oldest first (an entry written by an older evbusd
// has none: say so rather than show an empty table).
function attemptErrors(list) {
  if (!list || !list.length)
    return h('p', { id: 'attempt-errors' }, 'No per-attempt errors recorded for this entry (written by an older evbusd).');
  const rows = list.map((x) => h('tr', {},
    h('td', { class: 'num' }, String(x.attempt)), h('td', {}, fmtTime(x.at)),
    h('td', { class: 'mono' }, x.handler ?? 'before any handler'), h('td', {}, x.error)));
  return h('div', { id: 'attempt-errors' }, h('h3', {}, `Every attempt (${list.length})`),
    table('Errors of every failed attempt, oldest first', ['Attempt', 'Time', 'Handler', 'Error'], rows));
}

function renderDetail(root, ctx, id) {
  const body = h('div', {}, h('p', {}, 'Loading…'));
  const msg = h('div', { id: 'dlq-msg' });
  root.append(h('p', {}, h('a', { href: '#dlq' }, '← Back to dead letters')), pageHeading(`Dead letter ${id}`), msg, body);
  api('GET', `/api/v1/dlq/${encodeURIComponent(id)}`, { shape: S.dlqDetail }).then((d) => {
    const actions = ctx.can('operator') ? h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', onclick: (ev) => retryOne(d, ev.currentTarget, (m) => { state.flash = m; location.hash = '#dlq'; }) }, 'Retry'),
      h('button', { type: 'button', class: 'danger', onclick: (ev) => deleteOne(d, ev.currentTarget, (m) => { state.flash = m; location.hash = '#dlq'; }) }, 'Delete')) : null;
    clear(body,
      actions,
      h('h2', {}, 'Provenance'),
      dl([['DLQ id', d.dlq_id], ['Event id', d.event_id], ['Type', d.type], ['Tenant', d.tenant],
        ['Stream', d.stream], ['Original entry', d.orig_id], ['Replay job', d.replay_job || 'none']]),
      h('h2', {}, 'Failure'),
      dl([['Reason', d.reason], ['Failing handlers', d.handlers.join(', ') || '—'], ['Attempts', String(d.attempts ?? '—')],
        ['First failure', fmtTime(d.first_failure)], ['Last failure', fmtTime(d.last_failure)]]),
      h('h3', {}, 'Last error'),
      h('ul', { class: 'errors' }, (d.error || '—').split('; ').map((e) => h('li', {}, e))),
      attemptErrors(d.attempt_errors),
      h('h2', {}, `Event (${d.event_encoding})`),
      jsonBlock(d.event, 'Event payload'));
  }, (e) => clear(body, errorBox(e)));
}

function renderList(root, ctx) {
  const f = state.filters;
  const inputs = {
    type: h('input', { name: 'type', value: f.type || '', placeholder: 'approval.**' }),
    handler: h('input', { name: 'handler', value: f.handler || '', placeholder: 'instance/subscriber' }),
    reason: h('input', { name: 'reason', value: f.reason || '', placeholder: 'reject' }),
    since: h('input', { name: 'since', type: 'datetime-local', step: '1', value: f.sinceLocal || '' }),
    until: h('input', { name: 'until', type: 'datetime-local', step: '1', value: f.untilLocal || '' }),
  };
  if (ctx.session.tenant === '*') inputs.tenant = h('input', { name: 'tenant', value: f.tenant || '' });
  const filterMsg = h('div');
  const filterForm = h('form', { class: 'filters', 'aria-label': 'Filter dead letters', onsubmit: (ev) => {
    ev.preventDefault();
    const next = {};
    for (const k of ['type', 'handler', 'reason', 'tenant']) if (inputs[k] && inputs[k].value.trim()) next[k] = inputs[k].value.trim();
    for (const k of ['since', 'until']) {
      const iso = localToIso(inputs[k].value);
      if (iso === null) { clear(filterMsg, errorBox({ message: `The ${k} time is not a valid date and time.` })); inputs[k].focus(); return; }
      if (iso) { next[k] = iso; next[`${k}Local`] = inputs[k].value; }
    }
    state.filters = next; state.cursors = []; state.cursor = null;
    clear(filterMsg);
    load();
    redrive.reset();
  } },
  h('fieldset', {}, h('legend', {}, 'Filters'),
    h('div', { class: 'grid' },
      field('Type', inputs.type, 'exact, or a prefix pattern such as order.**'),
      field('Handler', inputs.handler, 'instance or instance/subscriber'),
      field('Reason', inputs.reason, 'reject, retries_exhausted, poison…'),
      field('Since (UTC)', inputs.since), field('Until (UTC)', inputs.until),
      inputs.tenant ? field('Tenant', inputs.tenant) : null),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply filters'),
      h('button', { type: 'button', class: 'secondary', onclick: () => {
        for (const i of Object.values(inputs)) i.value = '';
        filterForm.requestSubmit();
      } }, 'Clear filters'))), filterMsg);

  const searchInput = h('input', { name: 'q', required: true, autocomplete: 'off' });
  const searchMsg = h('div', { id: 'search-msg' });
  const searchForm = h('form', { role: 'search', 'aria-label': 'Find a dead letter', class: 'inline', onsubmit: async (ev) => {
    ev.preventDefault();
    const q = searchInput.value.trim();
    if (!q) return;
    if (/^\d+-\d+$/.test(q)) { location.hash = `#dlq/${encodeURIComponent(q)}`; return; }
    clear(searchMsg, h('p', { role: 'status' }, `Searching for event ${q}…`));
    try {
      // the server filters (event_id=), within this token's tenant
      const r = await api('GET', '/api/v1/dlq', { query: { limit: PAGE, event_id: q }, shape: S.dlqList });
      if (r.items.length === 1) { location.hash = `#dlq/${encodeURIComponent(r.items[0].dlq_id)}`; return; }
      if (!r.items.length) { clear(searchMsg, errorBox({ message: `No dead letter of event ${q} is visible to this token.` })); return; }
      // dead-lettered more than once (retried, failed again): list them all
      clear(searchMsg);
      state.filters = { event_id: q }; state.cursors = []; state.cursor = null;
      load();
      redrive.reset();
    } catch (e) { clear(searchMsg, errorBox(e)); }
  } },
  field('Event id or DLQ id', searchInput), h('button', { type: 'submit', class: 'secondary' }, 'Find'), searchMsg);

  const flash = h('div', { id: 'dlq-msg' }, state.flash);
  state.flash = null;
  const status = h('p', { role: 'status', id: 'dlq-status' });
  const list = h('div', { id: 'dlq-list' });
  const prev = h('button', { type: 'button', class: 'secondary', onclick: () => {
    state.cursor = state.cursors.pop() ?? null; load(prev);
  } }, 'Previous page');
  const next = h('button', { type: 'button', class: 'secondary', onclick: () => {
    state.cursors.push(state.cursor); state.cursor = next.dataset.cursor; load(next);
  } }, 'Next page');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Dead-letter pages' }, prev, next);

  const redrive = redriveSection(ctx);
  root.append(pageHeading('Dead letters'), flash, filterForm, searchForm, status, list, pager,
    ctx.can('operator') ? redrive.el : null);

  let seq = 0;
  async function load(focusAfter) {
    const my = ++seq;
    const q = { limit: PAGE, cursor: state.cursor };
    for (const k of ['type', 'handler', 'reason', 'tenant', 'since', 'until', 'event_id']) q[k] = state.filters[k];
    status.textContent = 'Loading…';
    let r;
    try {
      r = await api('GET', '/api/v1/dlq', { query: q, shape: S.dlqList });
    } catch (e) {
      if (my !== seq) return;
      status.textContent = '';
      clear(list, errorBox(e));
      return;
    }
    if (my !== seq) return;
    if (typeof r.total === 'number') state.total = r.total;
    const start = state.cursors.length * PAGE;
    const of = typeof state.total === 'number' ? ` of ${state.total}` : '';
    status.textContent = r.items.length
      ? `Showing ${start + 1}–${start + r.items.length}${of} dead letters (page ${state.cursors.length + 1}; ${filterText(state.filters)}).`
      : `No dead letters match (${filterText(state.filters)}).`;
    const op = ctx.can('operator');
    const headers = ['DLQ id', 'Event id', 'Type', 'Tenant', 'Reason', 'Handlers', 'Attempts', 'Last failure'];
    if (op) headers.push('Actions');
    const rows = r.items.map((it) => h('tr', {},
      h('td', {}, h('a', { href: `#dlq/${encodeURIComponent(it.dlq_id)}`, class: 'mono' }, it.dlq_id)),
      h('td', { class: 'mono' }, it.event_id ?? '—'), h('td', {}, it.type ?? '—'), h('td', {}, it.tenant ?? '—'),
      h('td', {}, it.reason), h('td', {}, it.handlers.join(', ')), h('td', { class: 'num' }, String(it.attempts ?? '—')),
      h('td', {}, fmtTime(it.last_failure)),
      op ? h('td', { class: 'row-actions' },
        h('button', { type: 'button', class: 'small', 'aria-label': `Retry ${it.dlq_id}`, onclick: (ev) => retryOne(it, ev.currentTarget, after) }, 'Retry'),
        h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${it.dlq_id}`, onclick: (ev) => deleteOne(it, ev.currentTarget, after) }, 'Delete')) : null));
    clear(list, r.items.length ? table(`Dead letters, page ${state.cursors.length + 1}`, headers, rows) : null);
    prev.disabled = state.cursors.length === 0;
    next.disabled = !r.next_cursor;
    next.dataset.cursor = r.next_cursor || '';
    if (focusAfter && focusAfter.disabled) status.setAttribute('tabindex', '-1'), status.focus();
  }
  // the row's buttons go with the old table: focus the outcome instead
  async function after(m) {
    clear(flash, m);
    state.total = undefined;
    await load();
    flash.setAttribute('tabindex', '-1');
    flash.focus();
  }
  load();
  return () => { seq++; redrive.stop(); };
}

function redriveSection() {
  const out = h('div', { id: 'redrive-out' });
  let job = null, timer = null, dry = null;
  const countBtn = h('button', { type: 'button', class: 'secondary', onclick: dryRun }, 'Count matching (dry run)');
  const el = h('section', { class: 'card', 'aria-labelledby': 'redrive-h' },
    h('h2', { id: 'redrive-h' }, 'Re-drive by filter'),
    h('p', {}, 'Retries every dead letter matching the filters above, each to its own stream and handlers, in the background. First count them; then confirm.'),
    countBtn, out);

  function filter() {
    const f = {};
    for (const k of ['type', 'handler', 'reason', 'tenant', 'since', 'until']) if (state.filters[k]) f[k] = state.filters[k];
    return f;
  }
  async function dryRun() {
    if (state.filters.event_id) {
      // the re-drive's filter has no event id: it would match far more
      clear(out, errorBox({ message: 'A re-drive does not take an event id: retry these entries one by one, or clear the filters.' }));
      return;
    }
    clear(out, h('p', { role: 'status' }, 'Counting…'));
    try {
      dry = await api('POST', '/api/v1/dlq/redrive', { body: { filter: filter(), dry_run: true }, shape: S.dryRun });
    } catch (e) { clear(out, errorBox(e)); return; }
    const f = filterText(filter());
    if (!dry.count) { clear(out, h('p', { role: 'status' }, `No dead letters match (${f}).`)); return; }
    const go = h('button', { type: 'button', class: 'danger', id: 'redrive-go', onclick: (ev) => confirmGo(ev.currentTarget, f) },
      `Re-drive ${dry.count} dead letters…`);
    clear(out, h('p', { role: 'status', id: 'redrive-count' }, `${dry.count} dead letters match (${f}).`), go);
    go.focus();
  }
  async function confirmGo(trigger, f) {
    const ok = await confirmDialog({
      title: `Re-drive ${dry.count} dead letters?`,
      body: [h('p', {}, `${dry.count} dead letters matching ${f} are published again to their streams and removed from the dead-letter queue, 100 per second.`),
        h('p', {}, 'You can cancel while it runs; entries already retried stay retried.')],
      confirmLabel: `Re-drive ${dry.count}`, danger: true, trigger,
    });
    if (!ok) return;
    try {
      job = await api('POST', '/api/v1/dlq/redrive', { body: { filter: filter(), confirm: dry.confirm }, shape: S.dlqJob });
    } catch (e) {
      clear(out, errorBox(e.kind === 'conflict' ? { message: `${e.message} Count again before re-driving.` } : e));
      return;
    }
    progress();
  }
  function progress() {
    const pct = job.total ? Math.round(((job.done + job.failed + job.gone) / job.total) * 100) : 100;
    const running = job.state === 'running';
    const cancel = running ? h('button', { type: 'button', class: 'danger', id: 'redrive-cancel', onclick: cancelJob }, 'Cancel re-drive') : null;
    const hadFocus = out.contains(document.activeElement) || document.activeElement === document.body;
    clear(out,
      h('label', { for: 'redrive-progress' }, `Re-drive ${job.id}: ${job.state}`),
      h('progress', { id: 'redrive-progress', max: String(job.total || 1), value: String(job.done + job.failed + job.gone) }, `${pct} %`),
      h('p', { id: 'redrive-state' }, `${job.done} retried, ${job.failed} failed, ${job.gone} already gone, of ${job.total} (${pct} %).${job.error ? ' Error: ' + job.error : ''}`),
      cancel);
    if (running) {
      if (hadFocus && cancel) cancel.focus();
      timer = setTimeout(poll, 500);
    } else {
      announce(`Re-drive ${job.state}: ${job.done} of ${job.total} retried.`);
      if (hadFocus) countBtn.focus();
    }
  }
  async function poll() {
    timer = null;
    try { job = await api('GET', `/api/v1/dlq/redrive/${encodeURIComponent(job.id)}`, { shape: S.dlqJob }); }
    catch (e) { clear(out, errorBox(e)); return; }
    progress();
  }
  async function cancelJob(ev) {
    const ok = await confirmDialog({
      title: 'Cancel this re-drive?',
      body: [h('p', {}, `Re-drive ${job.id} stops after the entry being retried; ${job.total - job.done} entries not reached stay in the dead-letter queue.`)],
      confirmLabel: 'Cancel re-drive', danger: true, trigger: ev.currentTarget,
    });
    if (!ok) return;
    if (timer) { clearTimeout(timer); timer = null; }
    try { job = await api('DELETE', `/api/v1/dlq/redrive/${encodeURIComponent(job.id)}`, { shape: S.dlqJob }); }
    catch (e) { clear(out, errorBox(e)); return; }
    progress();
  }
  return {
    el,
    reset() { dry = null; if (!job || job.state !== 'running') clear(out); },
    stop() { if (timer) clearTimeout(timer); timer = null; },
  };
}

export default {
  title: 'Dead letters',
  render(root, ctx) {
    if (ctx.arg) { renderDetail(root, ctx, ctx.arg); return null; }
    return renderList(root, ctx);
  },
};
