// app.js — the console's shell: sign-in (a bearer token kept in
// sessionStorage for this tab only), the page router (#overview, #dlq,
// #dlq/ID, ...), the navigation shown by role.  The server enforces every
// role; hiding a button here is only courtesy.
import { api, ApiError, S, getToken, setToken, clearToken, setUnauthorizedHandler } from './api.js';
import { h, clear, errorBox, field, pageHeading } from './ui.js';
import overview from './page-overview.js';
import dlq from './page-dlq.js';
import events from './page-events.js';
import replays from './page-replays.js';
import handlers from './page-handlers.js';
import audit from './page-audit.js';

const PAGES = { overview, dlq, events, replays, handlers, audit };
const main = document.getElementById('main');
let session = null;     // {token, roles, tenant}
let unmount = null;     // the current page's cleanup
let signInReason = '';

function can(role) { return !!session && session.roles.includes(role); }

function stopPage() {
  if (unmount) { try { unmount(); } catch { /* a page's cleanup never blocks navigation */ } }
  unmount = null;
}

function signOut(reason) {
  stopPage();
  clearToken();
  session = null;
  signInReason = reason || '';
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  if (location.hash !== '#signin') history.replaceState(null, '', '#signin');
  renderSignIn();
}

function renderSignIn() {
  document.title = 'Sign in · evbus console';
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true });
  const status = h('div', { id: 'signin-status' });
  if (signInReason) status.append(errorBox({ message: signInReason }));
  const form = h('form', { class: 'card narrow', onsubmit: async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) { clear(status, errorBox({ message: 'Type a token first.' })); input.focus(); return; }
    setToken(t);
    try {
      await start();
    } catch (e) {
      clearToken();
      clear(status, errorBox(e));
      input.focus();
    }
  } },
  field('Bearer token', input, 'An evbus admin token (evbusctl token create). It stays in this browser tab only and is cleared when you sign out or close the tab.'),
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'), status);
  clear(main, pageHeading('Sign in'), form);
  input.focus();
}

async function start() {
  let who;
  try {
    who = await api('GET', '/api/v1/whoami', { shape: S.whoami });
  } catch (e) {
    if (e.kind !== 'forbidden') throw e;
    throw new ApiError('forbidden', 'This token may not read the operator API (403): the console needs a token with the viewer, operator or admin role.');
  }
  session = { roles: who.roles, tenant: who.tenant, token: who.token };
  signInReason = '';
  if (!can('viewer')) {
    const role = who.roles.join(', ') || 'none';
    clearToken();
    session = null;
    throw new ApiError('forbidden', `Token '${who.token}' has the role ${role}; the console needs viewer, operator or admin.`);
  }
  document.getElementById('who-text').textContent =
    `${who.token} · ${who.roles.filter((r) => r !== 'viewer' || who.roles.length === 1).join(', ')} · tenant ${who.tenant}`;
  document.getElementById('who').hidden = false;
  for (const a of document.querySelectorAll('#nav a')) {
    const need = a.dataset.role;
    a.parentElement.hidden = !!need && !can(need);
  }
  document.getElementById('nav').hidden = false;
  if (!location.hash || location.hash === '#signin') history.replaceState(null, '', '#overview');
  route();
}

function route() {
  if (!session) return;
  const [name, ...rest] = location.hash.replace(/^#/, '').split('/');
  const page = PAGES[name] ? name : 'overview';
  for (const a of document.querySelectorAll('#nav a'))
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  stopPage();
  const root = h('div', { class: 'page' });
  clear(main, root);
  const ctx = { session, can, arg: rest.join('/') ? decodeURIComponent(rest.join('/')) : '' };
  const def = PAGES[page];
  if (def.role && !can(def.role)) {
    clear(root, pageHeading(def.title), errorBox({ message: `This page needs the ${def.role} role; token '${session.token}' does not have it.` }));
  } else {
    document.title = `${def.title} · evbus console`;
    unmount = def.render(root, ctx) || null;
  }
  const heading = root.querySelector('h1');
  if (heading) heading.focus();
}

window.addEventListener('hashchange', route);
document.getElementById('sign-out').addEventListener('click', () => signOut(''));
setUnauthorizedHandler(() => signOut('Your token was refused (401): it may have been revoked or mistyped. Sign in again.'));

if (getToken()) {
  start().catch((e) => { signOut(e.message); });
} else {
  signOut('');
}
