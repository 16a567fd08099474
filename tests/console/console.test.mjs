// The operator console in a real browser (docs/console.md): Debian's
// chromium driven by playwright-core, axe-core for accessibility, against
// the real evbusd, Redis and PostgreSQL that console_fixture.c started
// (ports, tokens and paths arrive in the environment).  Every check
// failing, and a missing browser, fails the run: nothing is skipped.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const env = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`FAIL: ${k} is not set (run through the meson test 'console')`); process.exit(1); }
  return v;
};
const BROWSER = process.env.EVBUS_CHROMIUM || '/usr/bin/chromium';
const URL0 = env('EVBUS_CONSOLE_URL');
const REDIS_PORT = env('EVBUS_REDIS_PORT');
const CALLS = env('EVBUS_CHAOS_CALLS');
const SHOTS = env('EVBUS_SCREENSHOTS');
const TOK = {
  operator: env('EVBUS_TOKEN_OPERATOR'), admin: env('EVBUS_TOKEN_ADMIN'), viewer: env('EVBUS_TOKEN_VIEWER'),
  tenantViewer: env('EVBUS_TOKEN_TENANT_VIEWER'), tenantOperator: env('EVBUS_TOKEN_TENANT_OPERATOR'),
  publisher: env('EVBUS_TOKEN_PUBLISHER'),
};
if (!fs.existsSync(BROWSER)) {
  console.error(`FAIL: no browser at ${BROWSER}: install Debian's chromium (apt-get install chromium); the console tests are never skipped`);
  process.exit(1);
}
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
fs.rmSync(SHOTS, { recursive: true, force: true }); // this run's pictures only
fs.mkdirSync(SHOTS, { recursive: true });

// ---- tiny test runner ------------------------------------------------------
let failures = 0;
const t0 = Date.now();
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}
async function step(name, fn) {
  const s = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - s} ms)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
    await shot(`FAIL-${name.replace(/\W+/g, '-')}`).catch(() => {});
  }
}

// ---- Redis (redis-cli) ----------------------------------------------------------
function redis(...args) {
  return execFileSync('redis-cli', ['-p', REDIS_PORT, '--raw', ...args], { encoding: 'utf8' }).trim();
}
function dlqHas(id) { return redis('XRANGE', 't:events:dlq', id, id) !== ''; }
function publishOk(id) {
  const ev = JSON.stringify({ specversion: '1.0', id, source: '/tests/console', type: 'test.order.created',
    time: new Date().toISOString(), tenantid: 'a', data: {} });
  redis('XADD', 't:events', '*', 'event', ev);
}
function chaosCalls(id) {
  const text = fs.existsSync(CALLS) ? fs.readFileSync(CALLS, 'utf8') : '';
  return text.split('\n').filter((l) => l.split(' ')[1] === id);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(fn, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// ---- the browser ----------------------------------------------------------------
const browser = await chromium.launch({ executablePath: BROWSER, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
page.on('console', (m) => {
  // a CSP violation or any script error is a failure; failed requests the
  // tests provoke (401, 403, Redis down) are logged by the browser too
  if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
});

async function shot(name, fullPage = false) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage });
}
async function axe(what) {
  await page.evaluate(AXE);
  const res = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  const v = res.violations.map((x) => `${x.id}: ${x.help} — ${x.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
  check(v.length === 0, `axe on ${what}: ${v.length} violations\n  ${v.join('\n  ')}`);
}
const heading = () => page.locator('h1').textContent();
async function signIn(token) {
  await page.goto(`${URL0}/console/#signin`);
  await page.evaluate(() => sessionStorage.clear());
  await page.reload(); // a fresh document: nothing of the previous session
  await until(async () => (await heading()) === 'Sign in', 'the sign-in form');
  await page.getByLabel('Bearer token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await until(async () => (await heading()) === 'Overview', 'the overview after sign-in');
}
async function go(hash, title) {
  await page.goto(`${URL0}/console/#${hash}`);
  await until(async () => (await heading()) === title, `page ${title}`);
}
// Tab until the focused element matches (keyboard only); returns its label.
async function tabTo(pred, what, max = 300) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const el = await page.evaluate(() => {
      const a = document.activeElement;
      return a ? { tag: a.tagName, label: a.getAttribute('aria-label') || a.textContent.trim(), id: a.id } : null;
    });
    if (el && pred(el)) return el;
  }
  throw new Error(`Tab never reached ${what}`);
}
const focused = () => page.evaluate(() => {
  const a = document.activeElement;
  return { id: a.id, label: a.getAttribute('aria-label') || a.textContent.trim(), inDialog: !!a.closest('dialog[open]') };
});
async function dlqStatus() { return page.locator('#dlq-status').textContent(); }
// The JSON replies the page itself gets for URLs containing `part` (a reply
// of a document the test navigated away from has no body: skipped).
function capture(part) {
  const got = [];
  const fn = async (r) => {
    if (!r.url().includes(part)) return;
    try { got.push({ url: r.url(), auth: r.request().headers().authorization, body: await r.json() }); } catch { /* discarded page */ }
  };
  page.on('response', fn);
  return { got, stop: () => page.off('response', fn) };
}

// ---- the tests ----------------------------------------------------------------------

await step('serving: index, modules and strict headers', async () => {
  const r = await page.request.get(`${URL0}/console/`);
  check(r.status() === 200, `GET /console/ ${r.status()}`);
  const hd = r.headers();
  check(/script-src 'self'/.test(hd['content-security-policy']) && !/unsafe/.test(hd['content-security-policy']), 'console CSP');
  check(hd['x-content-type-options'] === 'nosniff' && hd['referrer-policy'] === 'no-referrer', 'nosniff, no-referrer');
  const js = await page.request.get(`${URL0}/console/app.js`);
  check(/^text\/javascript/.test(js.headers()['content-type']), 'app.js type');
  const again = await page.request.get(`${URL0}/console/app.js`, { headers: { 'If-None-Match': js.headers().etag } });
  check(again.status() === 304, `If-None-Match: ${again.status()}`);
  for (const bad of ['/console/..%2fapi%2fv1%2fconfig', '/console/%2e%2e', '/console//app.js', '/console/app.js%00', '/console/nope.js'])
    check((await page.request.get(URL0 + bad)).status() === 404, `${bad} is 404`);
});

await step('sign-in page: a wrong token says so and stays', async () => {
  await page.goto(`${URL0}/console/`);
  await until(async () => (await heading()) === 'Sign in', 'sign-in');
  await axe('sign-in');
  await shot('signin');
  await page.getByLabel('Bearer token').fill('not-a-token');
  await page.keyboard.press('Enter');
  await until(() => page.getByRole('alert').filter({ hasText: '401' }).count(), 'the 401 message');
  check(await page.evaluate(() => sessionStorage.length) === 0, 'a refused token is not kept');
  await page.getByLabel('Bearer token').fill(TOK.publisher);
  await page.keyboard.press('Enter');
  await until(() => page.getByRole('alert').filter({ hasText: 'viewer, operator or admin' }).count(), 'the publisher message');
});

await step('tenant viewer: only its tenant, 250 dead letters over 5 pages', async () => {
  await signIn(TOK.tenantViewer);
  check((await page.locator('#who-text').textContent()).includes('tenant a'), 'tenant shown');
  await go('dlq', 'Dead letters');
  await until(async () => /Showing 1–50 of \d+/.test(await dlqStatus()), 'first page');
  const total = Number((await dlqStatus()).match(/of (\d+)/)[1]);
  check(total === 250, `tenant a's total: ${total}`);
  check(await page.getByRole('button', { name: /^(Retry|Delete) / }).count() === 0, 'no Retry or Delete for a viewer');
  const seen = new Set();
  for (let p = 0; p < 10; p++) {
    const rows = await page.locator('#dlq-list tbody tr').evaluateAll((trs) => trs.map((tr) => [tr.cells[0].textContent, tr.cells[3].textContent]));
    for (const [id, tenant] of rows) { check(tenant === 'a', `row ${id} is tenant ${tenant}`); seen.add(id); }
    const next = page.getByRole('button', { name: 'Next page' });
    if (await next.isDisabled()) break;
    const before = await dlqStatus();
    await next.click();
    await until(async () => (await dlqStatus()) !== before && !/Loading/.test(await dlqStatus()), 'the next page');
  }
  check(seen.size === total, `paged through ${seen.size} distinct of ${total}`);
  check(await page.getByLabel('Tenant').count() === 0, 'no tenant filter for a tenant token');
  await shot('tenant-viewer-dead-letters');
});

await step('operator: overview with health and charts', async () => {
  const history = capture('/api/v1/stats/history');
  await signIn(TOK.operator);
  const ours = () => history.got.filter((x) => x.auth === `Bearer ${TOK.operator}`);
  await until(() => ours().length, 'the overview asking for the history');
  history.stop();
  const hist = ours().pop().body;
  check(hist.period_s === 1 && hist.points.length >= 2, `the server's history: ${hist.points.length} points`);
  await until(async () => (await page.locator('#updated').textContent()) !== '', 'the first refresh');
  const label = await page.getByRole('img', { name: /^Throughput over the last 15 minutes/ }).getAttribute('aria-label');
  const n = Number(label.match(/(\d+) samples/)[1]);
  check(n >= hist.points.length, `the charts start from the history, not empty: ${label}`);
  check((await page.locator('#metrics-scope').textContent()).includes('every tenant'), 'whose numbers');
  await until(() => page.locator('#health .health.ok').filter({ hasText: 'Redis' }).count(), 'Redis OK');
  check(await page.locator('#health').filter({ hasText: 'PostgreSQL: OK' }).count() === 1, 'PostgreSQL OK');
  check(await page.locator('#health').filter({ hasText: 'Last reload: OK' }).count() === 1, 'reload OK');
  for (let i = 0; i < 3; i++) publishOk(`warm-${i}`);
  await until(async () => (await page.locator('svg.spark polyline').count()) >= 6, 'six charts drawn', 12000);
  check(/DLQ fill/.test(await page.locator('#metrics').textContent()), 'DLQ fill shown');
  check(await page.getByRole('link', { name: 'Audit' }).isVisible(), 'operators see Audit');
  await axe('overview');
  await shot('overview');
});

await step('operator: dead letters, every id in full, filters, search, detail', async () => {
  await go('dlq', 'Dead letters');
  await until(async () => /Showing 1–50 of 262/.test(await dlqStatus()), '262 dead letters');
  const first = (await page.locator('#dlq-list tbody tr td:first-child').first().textContent()).trim();
  check(/^\d{13}-\d+$/.test(first), `full id shown: ${first}`);
  check(await page.getByRole('button', { name: /^Retry / }).count() === 50, 'a Retry per row');
  await axe('dead letters');
  await shot('dead-letters');
  await page.getByLabel('Type', { exact: true }).fill('test.user.signup');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await until(async () => /of 50 dead letters/.test(await dlqStatus()), 'the type filter: 50');
  const types = await page.locator('#dlq-list tbody tr td:nth-child(3)').allTextContents();
  check(types.every((t) => t === 'test.user.signup'), 'only that type');
  await page.getByLabel('Reason').fill('poison');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await until(async () => /No dead letters match/.test(await dlqStatus()), 'no poison');
  await page.getByRole('button', { name: 'Clear filters' }).click();
  await until(async () => /of 262/.test(await dlqStatus()), 'cleared');
  const asked = [];
  const onRequest = (r) => { if (r.url().includes('/api/v1/dlq?')) asked.push(r.url()); };
  page.on('request', onRequest);
  await page.getByLabel('Event id or DLQ id').fill('a-007');
  await page.getByRole('button', { name: 'Find' }).click();
  await until(async () => /^Dead letter \d+-\d+$/.test(await heading()), 'the detail view');
  page.off('request', onRequest);
  check(asked.length === 1 && /[?&]event_id=a-007(&|$)/.test(asked[0]), `the search asks the server once with event_id: ${asked.join(' ')}`);
  const body = await until(async () => {
    const t = await page.locator('main').textContent();
    return t.includes('"fault"') ? t : null;
  }, 'the payload');
  check(body.includes('a-007') && body.includes('"fault": "reject"') && body.includes('chaos/main'), 'payload, provenance, error');
  const attempts = await page.locator('#attempt-errors tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  check(attempts.length === 1 && attempts[0][0] === '1' && attempts[0][2] === 'chaos/main' &&
    attempts[0][3].includes('data.fault asks for a rejection'), `every attempt's error: ${JSON.stringify(attempts)}`);
  check(await page.getByRole('region', { name: 'Errors of every failed attempt, oldest first' }).count() === 1, 'the attempts table is named');
  await axe('dead-letter detail');
  await shot('dead-letter-detail');
});

await step('operator: retry one and delete one with the keyboard only', async () => {
  await go('dlq', 'Dead letters');
  await until(async () => /of 262/.test(await dlqStatus()), 'list');
  const ids = await page.locator('#dlq-list tbody tr td:first-child').allTextContents();
  const [toRetry, toDelete, toKeep] = [ids[0].trim(), ids[1].trim(), ids[2].trim()];
  // Escape cancels, focus returns to the trigger, nothing changes
  await page.locator('#page-title').focus();
  await tabTo((e) => e.label === `Delete ${toKeep}`, `Delete ${toKeep}`);
  await page.keyboard.press('Enter');
  await until(() => page.locator('dialog#confirm[open]').count(), 'the dialog');
  let f = await focused();
  check(f.inDialog && f.id === 'confirm-cancel', `focus on Cancel in the dialog, got ${JSON.stringify(f)}`);
  check(await page.getByRole('dialog', { name: 'Delete this dead letter?' }).count() === 1, 'dialog named');
  const desc = await page.evaluate(() => document.getElementById(document.getElementById('confirm').getAttribute('aria-describedby')).textContent);
  check(desc.includes(toKeep), 'dialog described, naming the entry');
  await axe('delete dialog');
  await shot('dialog-delete');
  await page.keyboard.press('Escape');
  await until(async () => !(await page.locator('dialog#confirm[open]').count()), 'closed');
  f = await focused();
  check(f.label === `Delete ${toKeep}`, `focus back on the trigger: ${JSON.stringify(f)}`);
  check(dlqHas(toKeep), 'Escape deleted nothing');
  // Enter on the default (Cancel) button does nothing either
  await page.keyboard.press('Enter');
  await until(() => page.locator('dialog#confirm[open]').count(), 'the dialog again');
  await page.keyboard.press('Enter');
  await until(async () => !(await page.locator('dialog#confirm[open]').count()), 'closed by Enter');
  check(dlqHas(toKeep), 'Enter on the default button deleted nothing');

  // retry: Tab to the row's Retry, Enter, Tab to Retry in the dialog, Enter
  await page.locator('#page-title').focus();
  await tabTo((e) => e.label === `Retry ${toRetry}`, `Retry ${toRetry}`);
  await page.keyboard.press('Enter');
  await until(() => page.locator('dialog#confirm[open]').count(), 'the retry dialog');
  await page.keyboard.press('Tab');
  f = await focused();
  check(f.id === 'confirm-ok' && f.label === 'Retry', `Tab reaches the dialog's Retry: ${JSON.stringify(f)}`);
  await page.keyboard.press('Enter');
  await until(() => page.locator('#dlq-msg').filter({ hasText: `Dead letter ${toRetry} retried` }).count(), 'retried');
  check(!dlqHas(toRetry), 'the retried entry left the DLQ');
  const streamText = redis('XREVRANGE', 't:events', '+', '-', 'COUNT', '20');
  check(streamText.includes(toRetry), 'the stream holds the retried event (retried_from)');

  await page.locator('#page-title').focus();
  const delId = (await page.locator('#dlq-list tbody tr td:first-child').allTextContents()).map((s) => s.trim()).find((s) => s === toDelete);
  check(delId, 'the entry to delete is listed');
  await tabTo((e) => e.label === `Delete ${toDelete}`, `Delete ${toDelete}`);
  await page.keyboard.press('Enter');
  await until(() => page.locator('dialog#confirm[open]').count(), 'the delete dialog');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await until(() => page.locator('#dlq-msg').filter({ hasText: `Dead letter ${toDelete} deleted` }).count(), 'deleted');
  check(!dlqHas(toDelete), 'the deleted entry is gone from Redis');
  check(dlqHas(toKeep), 'the other one is still there');
  f = await focused();
  check(f.id === 'dlq-msg', `focus on the outcome: ${JSON.stringify(f)}`);
});

await step('operator: bulk re-drive with dry run, confirmation and progress', async () => {
  await sleep(500); // the retried event was rejected again: let its new dead letter land
  await go('dlq', 'Dead letters');
  await page.getByLabel('Type', { exact: true }).fill('test.user.signup');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await until(async () => /of \d+ dead letters/.test(await dlqStatus()), 'filtered');
  const n = Number((await dlqStatus()).match(/of (\d+) dead/)[1]);
  const before = redis('XLEN', 't:events');
  await page.getByRole('button', { name: 'Count matching (dry run)' }).click();
  await until(() => page.locator('#redrive-count').filter({ hasText: `${n} dead letters match (type = test.user.signup)` }).count(), 'the dry-run count');
  await page.getByRole('button', { name: `Re-drive ${n} dead letters…` }).click();
  await until(() => page.getByRole('dialog', { name: `Re-drive ${n} dead letters?` }).count(), 'the confirmation');
  check((await page.locator('#confirm-desc').textContent()).includes('type = test.user.signup'), 'the confirmation names the filter');
  await axe('re-drive dialog');
  await shot('dialog-redrive');
  await page.locator('#confirm-ok').click();
  await until(() => page.locator('#redrive-progress').count(), 'the progress bar');
  await until(async () => /: done/.test(await page.locator('#redrive-out').textContent()), 'the re-drive finishing', 30000);
  check((await page.locator('#redrive-state').textContent()).startsWith(`${n} retried`), 'all retried');
  await shot('redrive-done');
  check(Number(redis('XLEN', 't:events')) >= Number(before) + n, `the stream grew by ${n}`);
});

await step('operator: start a replay, watch it move, cancel it', async () => {
  await go('replays', 'Replays');
  await page.getByLabel('Rate (events/s)').fill('0');
  await page.getByRole('button', { name: 'Start replay' }).click();
  await until(() => page.getByRole('alert').filter({ hasText: 'Rate:' }).count(), 'validation before submit');
  await page.getByLabel('Rate (events/s)').fill('2');
  await page.getByLabel('Types').fill('test.**');
  await page.getByRole('button', { name: 'Start replay' }).click();
  await until(() => page.locator('#replay-progress').count(), 'the job');
  const v0 = Number(await page.locator('#replay-progress').getAttribute('value'));
  await until(async () => Number(await page.locator('#replay-progress').getAttribute('value')) > v0 &&
    /running/.test(await page.locator('#replay-job').textContent()), 'the progress bar moving', 20000);
  await axe('replays');
  await shot('replays');
  await page.getByRole('button', { name: 'Cancel replay' }).click();
  await until(() => page.getByRole('dialog', { name: 'Cancel this replay?' }).count(), 'the cancel dialog');
  await page.locator('#confirm-ok').click();
  await until(async () => /Status: cancelled/.test(await page.locator('#replay-job').textContent()), 'cancelled');
});

await step('operator: pause a handler, deliveries wait, resume delivers them', async () => {
  await go('handlers', 'Handlers');
  await until(() => page.getByRole('button', { name: 'Pause chaos' }).count(), 'the pause button');
  await axe('handlers');
  await shot('handlers');
  await page.getByLabel(/Reason for a pause/).fill('console test');
  await page.getByRole('button', { name: 'Pause chaos' }).click();
  await page.locator('#confirm-ok').click();
  await until(() => page.getByRole('button', { name: 'Resume chaos' }).count(), 'paused');
  await sleep(400); // every host follows within 250 ms
  publishOk('paused-1');
  await sleep(1500);
  check(chaosCalls('paused-1').length === 0, 'no delivery while paused');
  await page.getByRole('button', { name: 'Resume chaos' }).click();
  await page.locator('#confirm-ok').click();
  await until(() => page.getByRole('button', { name: 'Pause chaos' }).count(), 'running again');
  await until(() => chaosCalls('paused-1').some((l) => / OK$/.test(l)), 'the deferred delivery', 15000);
});

await step('operator: events and audit', async () => {
  await go('events', 'Events');
  await page.getByLabel('Event id').fill('ok-001');
  await page.getByRole('button', { name: 'Look up' }).click();
  await until(() => page.locator('#event-one').filter({ hasText: 'COMPLETED' }).count(), 'the event');
  const historyRows = () => page.locator('#status-history tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  let hist = await historyRows();
  check(hist[0][1] === 'added to the stream' && hist.some((r) => r[1] === 'COMPLETED' && r[2] === '1'), `ok-001's history: ${JSON.stringify(hist)}`);
  await page.getByLabel('Event id').fill('a-007');
  await page.getByRole('button', { name: 'Look up' }).click();
  await until(() => page.locator('#event-one').filter({ hasText: 'Event a-007' }).count(), 'a dead-lettered event');
  hist = await historyRows();
  check(hist.some((r) => r[1] === 'DEAD_LETTERED' && r[3].includes('data.fault asks for a rejection')), `a-007's history: ${JSON.stringify(hist)}`);
  check(await page.getByRole('region', { name: 'Status history of event a-007, oldest first' }).count() === 1, 'the history table is named');
  await page.getByLabel('Status', { exact: true }).selectOption('DEAD_LETTERED');
  await page.getByRole('button', { name: 'List', exact: true }).click();
  await until(() => page.locator('#event-list tbody tr').count(), 'the list');
  await axe('events');
  await shot('events');
  await page.getByLabel('Event id').fill('no-such-event');
  await page.getByRole('button', { name: 'Look up' }).click();
  await until(() => page.getByRole('alert').filter({ hasText: 'Not found (404)' }).count(), 'a clear 404');
  await go('audit', 'Audit');
  await until(() => page.locator('#audit-list tbody tr').count(), 'audit rows');
  await page.getByLabel('Action').fill('dlq.delete');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await until(async () => {
    const a = await page.locator('#audit-list tbody tr td:nth-child(4)').allTextContents();
    return a.length >= 1 && a.every((x) => x === 'dlq.delete');
  }, 'filtered audit');
  await axe('audit');
  await shot('audit');
});

await step('a shape mismatch and a network error each say so', async () => {
  await page.route('**/api/v1/handlers', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: '{"generation":1,"handlers":[{"instance":7}]}' }));
  await go('handlers', 'Handlers');
  await until(() => page.getByRole('alert').filter({ hasText: 'Unexpected reply to GET /api/v1/handlers: reply.handlers[0].instance should be a string' }).count(), 'the shape message');
  await page.unroute('**/api/v1/handlers');
  await page.route('**/api/v1/handlers', (r) => r.abort('connectionrefused'));
  await go('overview', 'Overview');
  await go('handlers', 'Handlers');
  await until(() => page.getByRole('alert').filter({ hasText: 'Cannot reach evbusd' }).count(), 'the network message');
  await page.unroute('**/api/v1/handlers');
  await page.route('**/api/v1/handlers', (r) => r.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"unavailable","field":"","message":"redis: down"}' }));
  await go('overview', 'Overview');
  await go('handlers', 'Handlers');
  await until(() => page.getByRole('alert').filter({ hasText: '(503 unavailable): redis: down' }).count(), 'the 503 message');
  await page.unroute('**/api/v1/handlers');
});

await step('viewer: reads everything, no mutating button, forging gets 403', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await until(async () => (await heading()) === 'Sign in', 'signed out');
  check(await page.evaluate(() => sessionStorage.length) === 0, 'sign-out clears the token');
  await signIn(TOK.viewer);
  check(!(await page.getByRole('link', { name: 'Audit' }).isVisible()), 'no Audit for a viewer');
  await go('dlq', 'Dead letters');
  await until(async () => /Showing 1–50/.test(await dlqStatus()), 'list');
  check(await page.getByRole('button', { name: /^(Retry|Delete) / }).count() === 0, 'no Retry or Delete');
  check(await page.getByRole('button', { name: /dry run/ }).count() === 0, 'no re-drive');
  const id = (await page.locator('#dlq-list tbody tr td:first-child').first().textContent()).trim();
  const st = await page.evaluate(async (id) => (await fetch(`/api/v1/dlq/${id}/retry`, { method: 'POST',
    headers: { Authorization: `Bearer ${sessionStorage.getItem('evbus.console.token')}` } })).status, id);
  check(st === 403, `a forged retry is ${st}`);
  check(dlqHas(id), 'and changed nothing');
  await go('handlers', 'Handlers');
  await until(() => page.locator('#handlers-list tbody tr').count(), 'handlers');
  check(await page.getByRole('button', { name: /^(Pause|Resume) / }).count() === 0, 'no pause for a viewer');
  await go('replays', 'Replays');
  check(await page.getByRole('button', { name: 'Start replay' }).count() === 0, 'no replay form for a viewer');
  await shot('viewer-dead-letters');
});

await step('tenant operator: only its tenant everywhere, no tenant choice, forging is refused', async () => {
  const asOp = { headers: { Authorization: `Bearer ${TOK.operator}` } };
  const bItem = (await (await page.request.get(`${URL0}/api/v1/dlq?tenant=b&limit=1`, asOp)).json()).items[0];
  check(bItem && bItem.tenant === 'b', 'tenant b has a dead letter to aim at');
  const statsReplies = capture('/api/v1/stats');
  await signIn(TOK.tenantOperator);
  check((await page.locator('#who-text').textContent()).includes('tenant a'), 'tenant shown');
  // the replies to this session's requests (the previous page's may land too)
  const mine = (re) => statsReplies.got.filter((x) => re.test(x.url) && x.auth === `Bearer ${TOK.tenantOperator}`);
  await until(() => mine(/\/stats(\?|$)/).length && mine(/\/stats\/history/).length, 'the overview\'s stats and history');
  statsReplies.stop();
  const stats = mine(/\/stats(\?|$)/).pop().body;
  const hist = mine(/\/stats\/history/).pop().body;
  check(mine(/tenant=/).length === 0, 'the console asks for no tenant: the server scopes the token');
  check(hist.tenant === 'a' && hist.points.length >= 1, `the history is tenant a's: ${JSON.stringify(hist).slice(0, 120)}`);
  check(stats.tenant === 'a' && !('by_tenant' in stats) && !('untracked' in stats), `the overview reads tenant a's stats only: ${JSON.stringify(stats).slice(0, 200)}`);
  check(Object.keys(stats.by_type).every((t) => t.startsWith('test.')), 'types of its own events');
  check((await page.locator('#metrics-scope').textContent()).includes('tenant a'), 'the overview says whose numbers they are');

  await go('dlq', 'Dead letters');
  await until(async () => /Showing 1–50 of \d+/.test(await dlqStatus()), 'its dead letters');
  const tenants = await page.locator('#dlq-list tbody tr td:nth-child(4)').allTextContents();
  check(tenants.length === 50 && tenants.every((t) => t === 'a'), `only tenant a's rows: ${[...new Set(tenants)]}`);
  check(await page.getByRole('button', { name: /^Retry / }).count() === 50, 'an operator may retry its own');
  check(await page.getByLabel('Tenant').count() === 0, 'no tenant filter');
  await page.getByLabel('Event id or DLQ id').fill(bItem.event_id);
  await page.getByRole('button', { name: 'Find' }).click();
  await until(() => page.locator('#search-msg').filter({ hasText: `No dead letter of event ${bItem.event_id} is visible` }).count(), 'b\'s event not found');
  await page.goto(`${URL0}/console/#dlq/${bItem.dlq_id}`);
  await until(() => page.getByRole('alert').filter({ hasText: 'Not found (404)' }).count(), 'b\'s dead letter is 404 in the detail view');
  await axe('tenant operator, foreign dead letter');

  await go('events', 'Events');
  await page.getByRole('button', { name: 'List', exact: true }).click();
  await until(() => page.locator('#event-list tbody tr').count(), 'its events');
  const evTenants = await page.locator('#event-list tbody tr td:nth-child(3)').allTextContents();
  check(evTenants.every((t) => t === 'a'), `only tenant a's events: ${[...new Set(evTenants)]}`);
  await page.getByLabel('Event id').fill('ok-000'); // tenant b's (even numbers)
  await page.getByRole('button', { name: 'Look up' }).click();
  await until(() => page.getByRole('alert').filter({ hasText: 'Not found (404)' }).count(), 'b\'s event is 404');

  await go('replays', 'Replays');
  check(await page.getByRole('button', { name: 'Start replay' }).count() === 1, 'an operator gets the replay form');
  check(await page.getByLabel('Tenant').count() === 0, 'the replay form has no tenant choice');
  await axe('replays, tenant operator');
  await shot('tenant-operator-replays');

  const forged = await page.evaluate(async ({ bId }) => {
    const auth = { Authorization: `Bearer ${sessionStorage.getItem('evbus.console.token')}` };
    const json = { ...auth, 'Content-Type': 'application/json' };
    const st = async (method, url, body) => (await fetch(url, { method, headers: body ? json : auth, body: body ? JSON.stringify(body) : undefined })).status;
    return {
      listB: await st('GET', '/api/v1/dlq?tenant=b'),
      statsB: await st('GET', '/api/v1/stats?tenant=b'),
      historyB: await st('GET', '/api/v1/stats/history?tenant=b'),
      getB: await st('GET', `/api/v1/dlq/${bId}`),
      retryB: await st('POST', `/api/v1/dlq/${bId}/retry`),
      deleteB: await st('DELETE', `/api/v1/dlq/${bId}`),
      eventB: await st('GET', '/api/v1/events/ok-000'),
      replayB: await st('POST', '/api/v1/replays', { from: new Date(Date.now() - 3600e3).toISOString(), to: new Date().toISOString(), tenant: 'b' }),
      redriveB: await st('POST', '/api/v1/dlq/redrive', { filter: { tenant: 'b' }, dry_run: true }),
    };
  }, { bId: bItem.dlq_id });
  const want = { listB: 403, statsB: 403, historyB: 403, getB: 404, retryB: 404, deleteB: 404, eventB: 404, replayB: 403, redriveB: 403 };
  for (const [k, v] of Object.entries(want)) check(forged[k] === v, `forged ${k}: ${forged[k]}, wanted ${v}`);
  check(dlqHas(bItem.dlq_id), 'b\'s dead letter is untouched');
});

await step('a revoked or wrong token in the session returns to sign-in', async () => {
  await page.evaluate(() => sessionStorage.setItem('evbus.console.token', 'revoked-token'));
  await go('overview', 'Sign in').catch(() => {});
  await until(async () => (await heading()) === 'Sign in', 'back to sign-in');
  check(await page.getByRole('alert').filter({ hasText: '401' }).count() >= 1, 'the 401 message');
});

await step('360 px wide and 200 % text: no horizontal page scroll', async () => {
  await signIn(TOK.operator);
  await page.setViewportSize({ width: 360, height: 800 });
  for (const [hash, title] of [['dlq', 'Dead letters'], ['overview', 'Overview'], ['replays', 'Replays']]) {
    await go(hash, title);
    await sleep(300);
    const over = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(over <= 0, `${title} at 360 px overflows by ${over} px`);
  }
  await shot('mobile-replays', true);
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.evaluate(() => { document.documentElement.style.fontSize = '200%'; });
  await go('dlq', 'Dead letters');
  await page.evaluate(() => { document.documentElement.style.fontSize = '200%'; });
  await sleep(300);
  const over = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(over <= 0, `200 % text overflows by ${over} px`);
  await page.evaluate(() => { document.documentElement.style.fontSize = ''; });
});

await step('skip link and dark scheme', async () => {
  await page.emulateMedia({ colorScheme: 'dark', reducedMotion: 'reduce' });
  await go('overview', 'Overview');
  await page.locator('body').focus();
  await page.evaluate(() => document.activeElement.blur());
  await page.keyboard.press('Tab');
  const f = await focused();
  check(f.label === 'Skip to content', `the first Tab stop is the skip link: ${JSON.stringify(f)}`);
  await axe('overview, dark');
  await shot('overview-dark');
  await page.emulateMedia({ colorScheme: 'light', reducedMotion: 'no-preference' });
});

await step('Redis stopped: the overview shows the fault', async () => {
  await go('overview', 'Overview');
  try { redis('SHUTDOWN', 'NOSAVE'); } catch { /* the connection drops as it stops */ }
  await until(() => page.locator('#health .health.bad').filter({ hasText: 'Redis: FAULT' }).count(), 'Redis: FAULT', 20000);
  await axe('overview, Redis down');
  await shot('overview-redis-down');
});

const bad = problems.filter((p) => !/status of (401|403|404|503)/.test(p));
if (bad.length) { failures++; console.log(`FAIL browser errors:\n  ${bad.join('\n  ')}`); }
await browser.close();
console.log(`${failures ? 'FAILED' : 'passed'}: console tests in ${((Date.now() - t0) / 1000).toFixed(1)} s, screenshots in ${SHOTS}`);
process.exit(failures ? 1 : 0);
