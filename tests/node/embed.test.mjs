// The one-line embed (/whosin.js) on a page of ANOTHER origin, in Debian's
// Chromium: the host page is served by a tiny node:http server on its own
// port (a different origin from whosin's) under a strict Content-Security-
// Policy that lists only the whosin server, as a site owner would write it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startServer } from './lib/server.mjs';
import { launch } from './lib/browser.mjs';
import { waitFor } from './lib/wait.mjs';

const DEADLINE_MS = 5_000;

const escapeAttr = (s) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// Pages by path: '/' has a count and a list, '/badge' has neither.
function pageHtml(path, whosin, name) {
  const tag = `<script src="${whosin.baseUrl}/whosin.js" data-key="${whosin.key}" data-channel="presence-whosin"`
    + `${name ? ` data-name="${escapeAttr(name)}"` : ''} async></script>`;
  const body = path === '/badge'
    ? '<p>A page with no whosin elements.</p>'
    : '<p>Viewing now: <span id="count" data-whosin-count></span></p><ul id="list" data-whosin-list></ul>';
  return `<!doctype html><html><head><meta charset="utf-8"><title>host</title>${tag}</head><body>${body}</body></html>`;
}

// The host site: its own origin, its own CSP naming only the whosin server
// (`site.whosin`, which may be set after the site is up, so that a server
// can be started with the site's origin in --allowed-origin).
async function hostSite(t, whosin) {
  const site = { whosin };
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://host');
    if (url.pathname === '/favicon.ico') return res.writeHead(204).end();
    const w = new URL(site.whosin.baseUrl);
    const csp = [
      "default-src 'self'",
      `script-src 'self' ${w.origin}`,
      `connect-src ${w.origin} ws://${w.host}`,
      `style-src 'self' ${w.origin}`,
    ].join('; ');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': csp });
    res.end(pageHtml(url.pathname, site.whosin, url.searchParams.get('name')));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  site.origin = `http://127.0.0.1:${server.address().port}`;
  return site;
}

// A visitor is a browser context (its own localStorage). Every CSP
// violation, console error and uncaught error of its pages is recorded.
async function visitor(browser) {
  const context = await browser.newContext();
  const problems = [];
  await context.exposeBinding('reportViolation', (_, v) => problems.push(`CSP: ${v}`));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.reportViolation(`${e.violatedDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  const open = async (url) => {
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
    await page.goto(url);
    return page;
  };
  return { context, open, problems };
}

const countOf = (page) => page.textContent('[data-whosin-count]');
const rowsOf = (page) => page.$$eval('[data-whosin-list] > li', (lis) => lis.map((li) => li.textContent));
const waitCount = (page, want, timeout = DEADLINE_MS) =>
  page.waitForFunction((w) => document.querySelector('[data-whosin-count]')?.textContent === w, want, { timeout });

test('two visitors on another site see count 2 and both rows; a second tab is the same visitor; one leaving is seen', async (t) => {
  const whosin = await startServer();
  t.after(() => whosin.stop());
  const host = await hostSite(t, whosin);
  const browser = await launch(t);

  const a = await visitor(browser);
  const b = await visitor(browser);
  const pa = await a.open(`${host.origin}/`);
  const pb = await b.open(`${host.origin}/`);
  await waitCount(pa, '2');
  await waitCount(pb, '2');
  await waitFor(async () => (await rowsOf(pa)).length === 2 && (await rowsOf(pb)).length === 2, { what: 'two rows in each list' });
  const rows = await rowsOf(pa);
  assert.deepEqual(await rowsOf(pb), rows, 'both visitors list the same two rows');
  for (const row of rows) assert.match(row, /^.+ — 127\.0\.0\.1$/);
  assert.notEqual(rows[0], rows[1]);

  // A second tab of B shares B's localStorage, so it sends B's id with its
  // token: it joins as B. Had it joined as a new visitor its own first
  // count would be 3, so seeing 2 in it proves it counted once.
  const ids = await pb.evaluate(() => [localStorage.getItem('whosin.visitor_id'), localStorage.getItem('whosin.visitor_token')]);
  assert.ok(ids[0] && /^[0-9a-f]{64}$/.test(ids[1]), `id and token kept: ${ids}`);
  const tab = await b.open(`${host.origin}/`);
  await waitCount(tab, '2');
  assert.deepEqual(await rowsOf(tab), rows);
  assert.equal(await countOf(pa), '2');
  await tab.close();

  await b.context.close();
  await waitCount(pa, '1');
  assert.equal((await rowsOf(pa)).length, 1);
  assert.deepEqual(a.problems, []);
  assert.deepEqual(b.problems, []);
});

test('a page with neither element gets a styled badge, under the strict CSP', async (t) => {
  const whosin = await startServer();
  t.after(() => whosin.stop());
  const host = await hostSite(t, whosin);
  const browser = await launch(t);
  const a = await visitor(browser);
  const page = await a.open(`${host.origin}/badge`);
  await page.waitForFunction(() => document.querySelector('.whosin-badge')?.textContent === '1 online', null, { timeout: DEADLINE_MS });
  // Styled by the linked /whosin-embed.css (no inline style anywhere).
  await page.waitForFunction(() => getComputedStyle(document.querySelector('.whosin-badge')).position === 'fixed', null, { timeout: DEADLINE_MS });
  const inline = await page.evaluate(() => [document.querySelectorAll('[style], style').length, document.querySelectorAll('script:not([src])').length]);
  assert.deepEqual(inline, [0, 0], 'no inline style or script was added');

  const b = await visitor(browser);
  await b.open(`${host.origin}/badge`);
  await page.waitForFunction(() => document.querySelector('.whosin-badge')?.textContent === '2 online', null, { timeout: DEADLINE_MS });
  assert.equal(await page.$$eval('.whosin-badge', (e) => e.length), 1, 'one badge');
  assert.deepEqual(a.problems, []);
  assert.deepEqual(b.problems, []);
});

test('a name that looks like HTML is shown as text, never made into elements', async (t) => {
  const whosin = await startServer();
  t.after(() => whosin.stop());
  const host = await hostSite(t, whosin);
  const browser = await launch(t);
  const evil = '<img src=x onerror=window.pwned=1>';
  const a = await visitor(browser);
  const b = await visitor(browser);
  const pa = await a.open(`${host.origin}/?name=${encodeURIComponent(evil)}`);
  const pb = await b.open(`${host.origin}/`);
  for (const p of [pa, pb]) {
    await waitCount(p, '2');
    await waitFor(async () => (await rowsOf(p)).includes(`${evil} — 127.0.0.1`), { what: 'the name as text' });
    const made = await p.evaluate(() => [document.querySelectorAll('img').length, window.pwned]);
    assert.deepEqual(made, [0, undefined], 'no element was made from the name');
  }
  assert.deepEqual(a.problems, []);
  assert.deepEqual(b.problems, []);
});

test('with --allowed-origin the embed works only on a listed site', async (t) => {
  const browser = await launch(t);

  // Listed elsewhere: the WebSocket and the auth endpoint answer 403 and the
  // page cannot read the auth answer (no CORS grant); nothing is filled.
  const refusing = await startServer({ extraArgs: ['--allowed-origin', 'https://elsewhere.example'] });
  t.after(() => refusing.stop());
  const host = await hostSite(t, refusing);
  const res = await fetch(refusing.authEndpoint, {
    method: 'POST',
    headers: { origin: host.origin },
    body: new URLSearchParams({ socket_id: '1.2', channel_name: 'presence-whosin' }),
  });
  assert.equal(res.status, 403);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
  const a = await visitor(browser);
  const page = await a.open(`${host.origin}/`);
  await waitFor(() => a.problems.some((p) => /WebSocket connection .* failed.*403/.test(p)),
    { what: 'the browser to report the refused WebSocket (403)' });
  const read = await page.evaluate(async (url) => {
    try {
      await fetch(url, { method: 'POST', body: new URLSearchParams({ socket_id: '1.2', channel_name: 'presence-whosin' }) });
      return 'read';
    } catch (e) {
      return 'blocked';
    }
  }, refusing.authEndpoint);
  assert.equal(read, 'blocked', 'the auth answer is not readable from this origin');
  assert.equal(await countOf(page), '');
  assert.equal(await page.$$eval('.whosin-badge', (e) => e.length), 0);

  // The host page's origin listed: the same page works.
  const listing = await startServer({ extraArgs: ['--allowed-origin', 'https://elsewhere.example', '--allowed-origin', host.origin] });
  t.after(() => listing.stop());
  host.whosin = listing;
  const b = await visitor(browser);
  const ok = await b.open(`${host.origin}/`);
  await waitCount(ok, '1');
  assert.equal((await rowsOf(ok)).length, 1);
  assert.deepEqual(b.problems, []);
});
