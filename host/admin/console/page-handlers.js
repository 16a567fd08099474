// page-handlers.js — every plugin instance and foreign handler with its
// subscriptions, counters and state; pause / resume (a "*" operator).
import { api } from './api.js';
import { h, clear, errorBox, okBox, table, pageHeading, confirmDialog, fmtNum } from './ui.js';

const SHAPE = {
  generation: '?integer',
  handlers: [{
    instance: 'string', kind: 'string', state: 'string',
    subscriptions: [{ handler: 'string', pattern: 'string', priority: '?integer' }],
    counters: { ok: 'integer', retry: 'integer', reject: 'integer', timeout: 'integer', dead: 'integer' },
  }],
};

export default {
  title: 'Handlers',
  render(root, ctx) {
    const msg = h('div', { id: 'handlers-msg' });
    const out = h('div', { id: 'handlers-list' }, h('p', {}, 'Loading…'));
    const reason = h('input', { id: 'pause-reason', name: 'reason', autocomplete: 'off' });
    const mayAct = ctx.can('operator') && ctx.session.tenant === '*';
    root.append(pageHeading('Handlers'), msg,
      mayAct ? h('div', { class: 'field narrow' }, h('label', { for: 'pause-reason' }, 'Reason for a pause (optional, goes to the audit log)'), reason) : null,
      out);
    async function act(hd, verb, trigger) {
      const pausing = verb === 'pause';
      const ok = await confirmDialog({
        title: `${pausing ? 'Pause' : 'Resume'} handler ${hd.instance}?`,
        body: [h('p', {}, pausing
          ? `${hd.instance} is no longer called, on every evbusd host: its deliveries wait in its retry schedule without spending an attempt until it is resumed.`
          : `${hd.instance} is called again; deliveries deferred while it was paused are due at once.`)],
        confirmLabel: pausing ? 'Pause' : 'Resume', danger: pausing, trigger,
      });
      if (!ok) return;
      try {
        const body = pausing && reason.value.trim() ? { reason: reason.value.trim() } : undefined;
        const r = await api('POST', `/api/v1/handlers/${encodeURIComponent(hd.instance)}/${verb}`, { body, shape: { instance: 'string', state: 'string' } });
        clear(msg, okBox(`Handler ${r.instance} is ${r.state}.`));
      } catch (e) { clear(msg, errorBox(e)); }
      await load();
      msg.setAttribute('tabindex', '-1');
      msg.focus();
    }
    async function load() {
      try {
        const r = await api('GET', '/api/v1/handlers', { shape: SHAPE });
        const headers = ['Instance', 'Kind', 'Subscriptions', 'ok', 'retry', 'reject', 'timeout', 'dead', 'State'];
        if (mayAct) headers.push('Action');
        clear(out, table(`Handlers of generation ${r.generation ?? '?'}`, headers, r.handlers.map((hd) => h('tr', {},
          h('td', { class: 'mono' }, hd.instance), h('td', {}, hd.kind),
          h('td', {}, h('ul', { class: 'plain' }, hd.subscriptions.map((s) => h('li', {}, `${s.handler}: ${s.pattern} (priority ${s.priority ?? '—'})`)))),
          ['ok', 'retry', 'reject', 'timeout', 'dead'].map((k) => h('td', { class: 'num' }, fmtNum(hd.counters[k]))),
          h('td', {}, h('span', { class: `badge ${hd.state}` }, hd.state)),
          mayAct ? h('td', {}, hd.state === 'paused'
            ? h('button', { type: 'button', class: 'small primary', onclick: (ev) => act(hd, 'resume', ev.currentTarget) }, `Resume ${hd.instance}`)
            : h('button', { type: 'button', class: 'small danger', onclick: (ev) => act(hd, 'pause', ev.currentTarget) }, `Pause ${hd.instance}`)) : null))));
      } catch (e) { clear(out, errorBox(e)); }
    }
    load();
    return null;
  },
};
