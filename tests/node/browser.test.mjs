// The visitor page served by `whosin serve` at /, in Debian's Chromium.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { launch } from './lib/browser.mjs';

const text = (page, sel) => page.textContent(sel);
const waitText = (page, sel, want, timeout = 5_000) =>
  page.waitForFunction(([s, w]) => {
    const el = document.querySelector(s);
    return el && (w instanceof RegExp ? w.test(el.textContent) : el.textContent === w);
  }, [sel, want], { timeout });

// Each browser context has its own localStorage: a different visitor.
async function visitor(browser, url) {
  const context = await browser.newContext({ viewport: { width: 360, height: 640 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  return { context, page, errors };
}

test('two pages see each other, and one leaving is seen within 5 s', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const browser = await launch(t);
  const a = await visitor(browser, server.baseUrl + '/');
  const b = await visitor(browser, server.baseUrl + '/');
  await waitText(a.page, '#count', '2');
  await waitText(b.page, '#count', '2');
  // Each shows both names, and marks itself.
  const names = async (p) => p.$$eval('#visitors li', (lis) => lis.map((li) => ({ text: li.textContent, you: li.classList.contains('you') })));
  const la = await names(a.page);
  const lb = await names(b.page);
  assert.equal(la.length, 2);
  assert.equal(lb.length, 2);
  const meA = la.find((x) => x.you).text;
  const meB = lb.find((x) => x.you).text;
  assert.notEqual(meA, meB);
  assert.ok(lb.some((x) => x.text === meA && !x.you), `B lists A (${meA}): ${JSON.stringify(lb)}`);
  assert.ok(la.some((x) => x.text === meB && !x.you), `A lists B (${meB}): ${JSON.stringify(la)}`);
  assert.match(meA, / — 127\.0\.0\.1$/);
  assert.match(await text(a.page, '#state'), /online/);
  assert.match(await text(a.page, '#me'), /127\.0\.0\.1/);

  // A second tab of the same visitor (same context, same localStorage) is one person.
  const tab = await b.context.newPage();
  await tab.goto(server.baseUrl + '/');
  await waitText(tab, '#count', '2');
  assert.equal(await text(a.page, '#count'), '2');
  await tab.close();

  await b.context.close();
  await waitText(a.page, '#count', '1', 5_000);
  assert.equal((await names(a.page)).length, 1);
  assert.deepEqual(a.errors, []);
});

test('the page says it is reconnecting when the server stops, and recovers', async (t) => {
  const first = await startServer();
  const app = { appId: first.appId, key: first.key, secret: first.secret };
  const port = first.port;
  const browser = await launch(t);
  const a = await visitor(browser, first.baseUrl + '/');
  await waitText(a.page, '#count', '1');
  await first.stop();
  await waitText(a.page, '#state', /reconnecting/);
  assert.equal(await text(a.page, '#count'), '1', 'the last list stays while reconnecting');
  const second = await startServer({ port, app });
  t.after(() => second.stop());
  await waitText(a.page, '#state', 'online', 35_000);
  const b = await visitor(browser, second.baseUrl + '/');
  await waitText(a.page, '#count', '2');
  await waitText(b.page, '#count', '2');
  assert.deepEqual(a.errors, []);
});

test('1000 visitors at 360 px: updates touch only what changed, and nothing overflows', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const browser = await launch(t);
  const a = await visitor(browser, server.baseUrl + '/');
  await waitText(a.page, '#count', '1');
  const result = await a.page.evaluate(() => {
    const view = window.whosinView;
    const members = Array.from({ length: 1000 }, (_, i) => ({ id: `v${i}`, info: { name: `Visitor ${String(i).padStart(4, '0')}`, ip: '203.0.113.7' } }));
    view.apply({ event: 'snapshot', me: members[0], members });
    const first = document.querySelector('#visitors li[data-id="v500"]');
    const started = performance.now();
    for (let i = 1000; i < 1100; i++) view.apply({ event: 'member_added', member: { id: `v${i}`, info: { name: `New ${i}` } } });
    for (let i = 1; i < 51; i++) view.apply({ event: 'member_removed', member: { id: `v${i}` } });
    const ms = performance.now() - started;
    return {
      items: document.querySelectorAll('#visitors li').length,
      count: document.querySelector('#count').textContent,
      sameNode: first === document.querySelector('#visitors li[data-id="v500"]'),
      overflow: document.documentElement.scrollWidth > window.innerWidth,
      ms,
    };
  });
  assert.equal(result.items, 1050);
  assert.equal(result.count, '1050');
  assert.ok(result.sameNode, 'an unchanged visitor keeps its element: no re-render per event');
  assert.equal(result.overflow, false, 'no horizontal scrolling at 360 px');
  t.diagnostic(`150 incremental updates on a 1000-visitor list took ${result.ms.toFixed(1)} ms`);
});

test('the page charts the last 24 hours from the server history and the live count', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const browser = await launch(t);
  const a = await visitor(browser, server.baseUrl + '/');
  await waitText(a.page, '#count', '1');
  const b = await visitor(browser, server.baseUrl + '/');
  await waitText(a.page, '#count', '2');
  // The panel shows once history.json answered; the peak is the 2 so far.
  await a.page.waitForSelector('#history-panel:not([hidden])', { timeout: 5_000 });
  await waitText(a.page, '#history-peak', /^Peak [12] at \d\d:\d\d$/);
  const d = await a.page.getAttribute('#history-line', 'd');
  assert.match(d, /^M[\d.]+ [\d.]+( [HV][\d.]+)+$/, d);
  // The live count moves the right edge: one leaves, the line ends lower.
  await b.context.close();
  await waitText(a.page, '#count', '1');
  await a.page.waitForFunction((before) => document.getElementById('history-line').getAttribute('d') !== before, d);
  assert.deepEqual(a.errors, []);
});
