// Issue 12, webhooks: what whosin POSTs is checked by the official pusher
// SDK (`pusher.webhook(...).isValid()`, `getEvents()`), with pusher-js
// visitors causing the events; the grace period, a dead and a stalled
// receiver, and two nodes sharing one Redis sending each event once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startServer } from './lib/server.mjs';
import { startRedis } from './lib/redis.mjs';
import {
  PRESENCE, connected, joinPresence, newClient, newVisitorId, restClient, subscribe,
} from './lib/clients.mjs';
import { waitFor } from './lib/wait.mjs';

/** A webhook receiver: every POST's headers and raw body, answered 200. */
async function receiver(t, { stall = false } = {}) {
  const posts = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      posts.push({ headers: req.headers, rawBody: body });
      if (!stall) res.end('ok');
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => { srv.closeAllConnections(); srv.close(); });
  return { url: `http://127.0.0.1:${srv.address().port}/hooks`, posts };
}

/** Every event received, each post checked with the SDK first. */
function events(server, posts) {
  const sdk = restClient(server);
  return posts.flatMap((p) => {
    const hook = sdk.webhook(p);
    assert.ok(hook.isValid(), `a valid signature: ${JSON.stringify(p.headers)}`);
    return hook.getEvents();
  });
}

const named = (list, name, extra = () => true) => list.filter((e) => e.name === name && extra(e));

test('presence and occupancy webhooks, signed, with a grace period for leaving', async (t) => {
  const hooks = await receiver(t);
  const server = await startServer({ extraArgs: ['--webhook', hooks.url, '--webhook-grace-ms', '1500', '--enable-client-events'] });
  t.after(() => server.stop());
  const all = () => events(server, hooks.posts);

  const id = newVisitorId();
  const first = await joinPresence(t, server, { visitorId: id });
  await waitFor(() => named(all(), 'member_added').length === 1, { what: 'member_added' });
  assert.deepEqual(named(all(), 'member_added')[0], { name: 'member_added', channel: PRESENCE, user_id: id });
  assert.equal(named(all(), 'channel_occupied', (e) => e.channel === PRESENCE).length, 1);
  assert.equal(hooks.posts[0].headers['x-pusher-key'], server.key);
  assert.match(hooks.posts[0].headers['content-type'], /application\/json/);
  const body = JSON.parse(hooks.posts[0].rawBody);
  assert.ok(Math.abs(body.time_ms - Date.now()) < 10_000, 'time_ms is now');

  // A reload: the same visitor leaves and is back within the grace period.
  first.client.disconnect();
  const again = await joinPresence(t, server, { visitorId: id });
  // A client event from it, as a barrier that reaches the receiver after
  // anything the reload produced (same task, same order).
  again.channel.trigger('client-hi', { n: 1 });
  await waitFor(() => named(all(), 'client_event').length === 1, { what: 'client_event' });
  const ce = named(all(), 'client_event')[0];
  assert.deepEqual(
    { channel: ce.channel, event: ce.event, data: JSON.parse(ce.data), user_id: ce.user_id },
    { channel: PRESENCE, event: 'client-hi', data: { n: 1 }, user_id: id },
  );
  assert.equal(ce.socket_id, again.client.connection.socket_id);
  // Past the grace period: neither a removal nor a second join was sent.
  await new Promise((r) => setTimeout(r, 1800));
  assert.equal(named(all(), 'member_added').length, 1, 'no second member_added');
  assert.equal(named(all(), 'member_removed').length, 0, 'no member_removed for a reload');
  assert.equal(named(all(), 'channel_vacated').length, 0);

  // Leaving for good: member_removed and channel_vacated after the grace.
  const left = Date.now();
  again.client.disconnect();
  await waitFor(() => named(all(), 'channel_vacated', (e) => e.channel === PRESENCE).length === 1,
    { timeout: 6_000, what: 'channel_vacated' });
  assert.deepEqual(named(all(), 'member_removed'), [{ name: 'member_removed', channel: PRESENCE, user_id: id }]);
  assert.ok(Date.now() - left >= 1400, `waited the grace period (${Date.now() - left} ms)`);

  // cache_miss on an empty cache channel.
  const c = newClient(t, server);
  await connected(c);
  await subscribe(c, 'cache-empty');
  await waitFor(() => named(all(), 'cache_miss').length === 1, { what: 'cache_miss' });
  assert.equal(named(all(), 'cache_miss')[0].channel, 'cache-empty');
});

test('event_types filter what a receiver gets', async (t) => {
  const hooks = await receiver(t);
  const other = await receiver(t);
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'whosin-hooks-'));
  const file = join(dir, 'whosin.toml');
  writeFileSync(file, `
[[apps]]
id = "hooks"
key = "hooks-key"
secret = "hooks-secret"
[[apps.webhooks]]
url = "${hooks.url}"
event_types = ["channel_occupied"]
[[apps.webhooks]]
url = "${other.url}"
`);
  const server = await startServer({ app: { appId: 'hooks', key: 'hooks-key', secret: 'hooks-secret' }, extraArgs: ['--config', file] });
  t.after(() => server.stop());
  await joinPresence(t, server, { visitorId: newVisitorId() });
  await waitFor(() => named(events(server, other.posts), 'member_added').length === 1, { what: 'all types to the second' });
  await waitFor(() => events(server, hooks.posts).length >= 1, { what: 'occupied to the first' });
  assert.deepEqual(events(server, hooks.posts).map((e) => e.name), ['channel_occupied']);
});

test('a dead or stalled receiver never slows presence', async (t) => {
  const stalled = await receiver(t, { stall: true });
  const server = await startServer({
    extraArgs: ['--webhook', 'http://127.0.0.1:9/nothing-listens-here', '--webhook', stalled.url],
  });
  t.after(() => server.stop());
  const a = await joinPresence(t, server, { visitorId: newVisitorId() });
  for (let i = 0; i < 30; i++) {
    const started = Date.now();
    const b = await joinPresence(t, server, { visitorId: newVisitorId() });
    await waitFor(() => a.channel.members.count === 2, { what: 'member seen' });
    assert.ok(Date.now() - started < 1_000, `join ${i} took ${Date.now() - started} ms`);
    b.client.disconnect();
    await waitFor(() => a.channel.members.count === 1, { what: 'member gone' });
  }
  assert.ok(stalled.posts.length >= 1, 'the stalled receiver was tried');
});

test('two nodes, one Redis: each webhook event is sent once', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const hooks = await receiver(t);
  const args = (node) => ['--redis-url', redis.url, '--node-id', node, '--webhook', hooks.url, '--webhook-grace-ms', '300'];
  const one = await startServer({ extraArgs: args('n1') });
  t.after(() => one.stop());
  const two = await startServer({ app: { appId: one.appId, key: one.key, secret: one.secret }, extraArgs: args('n2') });
  t.after(() => two.stop());
  const all = () => events(one, hooks.posts);

  const ann = newVisitorId();
  const bob = newVisitorId();
  const a = await joinPresence(t, one, { visitorId: ann });
  await waitFor(() => named(all(), 'channel_occupied').length === 1, { what: 'occupied once' });
  const b = await joinPresence(t, two, { visitorId: bob });
  await waitFor(() => a.channel.members.count === 2, { timeout: 10_000, what: 'nodes see each other' });
  // Ann's second tab, on the other node: not news.
  const a2 = await joinPresence(t, two, { visitorId: ann });
  await waitFor(() => named(all(), 'member_added').length === 2, { what: 'two member_added' });
  a.client.disconnect();
  b.client.disconnect();
  await waitFor(() => named(all(), 'member_removed').length === 1, { timeout: 6_000, what: 'bob removed' });
  assert.deepEqual(named(all(), 'member_removed').map((e) => e.user_id), [bob]);
  a2.client.disconnect();
  await waitFor(() => named(all(), 'channel_vacated').length === 1, { timeout: 6_000, what: 'vacated once' });
  await waitFor(() => named(all(), 'member_removed').length === 2, { timeout: 6_000, what: 'ann removed' });
  // Settle, then count: once each.
  await new Promise((r) => setTimeout(r, 800));
  const list = all();
  assert.deepEqual(named(list, 'member_added').map((e) => e.user_id).sort(), [ann, bob].sort());
  assert.deepEqual(named(list, 'member_removed').map((e) => e.user_id).sort(), [ann, bob].sort());
  assert.equal(named(list, 'channel_occupied').length, 1);
  assert.equal(named(list, 'channel_vacated').length, 1);
});
