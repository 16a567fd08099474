// ui.js — DOM helpers shared by the pages: element building (no
// innerHTML anywhere: server data only ever becomes text), the
// confirmation dialog, messages, formatting.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// A polite announcement for screen readers (progress, results).
export function announce(text) {
  const a = document.getElementById('announce');
  a.textContent = '';
  setTimeout(() => { a.textContent = text; }, 30);
}

// An error box: role=alert, the ApiError's message (or any error's).
export function errorBox(err) {
  const msg = err && err.message ? err.message : String(err);
  return h('div', { class: 'msg error', role: 'alert' }, h('strong', {}, 'Error: '), msg);
}

export function okBox(text) {
  return h('div', { class: 'msg ok', role: 'status' }, text);
}

// The confirmation dialog (index.html #confirm): a native modal <dialog>
// named by its title and described by its body.  Cancel is first, has
// focus and is the form's default; Escape cancels; focus goes back to the
// trigger.  Resolves true only on the explicit confirm button.
export function confirmDialog({ title, body, confirmLabel, danger = true, trigger }) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  clear(document.getElementById('confirm-desc'), body);
  const ok = document.getElementById('confirm-ok');
  ok.textContent = confirmLabel;
  ok.className = danger ? 'danger' : 'primary';
  const back = trigger || document.activeElement;
  return new Promise((resolve) => {
    dlg.returnValue = '';
    const done = () => {
      dlg.removeEventListener('close', done);
      resolve(dlg.returnValue === 'confirm');
      if (back && back.isConnected) back.focus();
    };
    dlg.addEventListener('close', done);
    dlg.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}

// ---- formatting -----------------------------------------------------------

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return Number(n).toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtAge(ms) {
  if (ms === null || ms === undefined || ms < 0) return '—';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

// <input type=datetime-local> (taken as UTC) -> RFC 3339, or '' when empty.
export function localToIso(v) {
  if (!v) return '';
  const d = new Date(v + (v.length === 16 ? ':00Z' : 'Z'));
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

// A labelled form control: <div class=field><label>…</label><input></div>.
let uid = 0;
export function field(label, control, hint) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

// A table in a focusable scrolling region (narrow screens scroll it).
export function table(caption, headers, rows) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': caption, tabindex: '0' },
    h('table', {}, h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)));
}

export function pageHeading(text) {
  return h('h1', { tabindex: '-1', id: 'page-title' }, text);
}

// Key-value list.
export function dl(pairs) {
  return h('dl', { class: 'kv' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export function jsonBlock(value, label) {
  return h('pre', { class: 'json', tabindex: '0', role: 'region', 'aria-label': label }, JSON.stringify(value, null, 2));
}
