// 5. Events triggered through the REST API with the official `pusher` SDK
// reach pusher-js subscribers; socket_id excludes one connection.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { PRESENCE, connected, newClient, newVisitorId, restClient, subscribe } from './lib/clients.mjs';
import { nextEvent, record } from './lib/wait.mjs';

const PUBLIC = 'news-feed';
let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

// Two clients, each subscribed to a public channel and the presence channel.
async function twoSubscribers(t) {
  const out = [];
  for (let i = 0; i < 2; i++) {
    const client = newClient(t, server, { visitorId: newVisitorId() });
    await connected(client);
    out.push({
      client,
      pub: await subscribe(client, PUBLIC),
      presence: await subscribe(client, PRESENCE),
    });
  }
  return out;
}

test('trigger to a public and to the presence channel is delivered', async (t) => {
  const [a, b] = await twoSubscribers(t);
  const rest = restClient(server);

  const pubA = nextEvent(a.pub, 'update', { what: 'update on the public channel at A' });
  const pubB = nextEvent(b.pub, 'update', { what: 'update on the public channel at B' });
  const res = await rest.trigger(PUBLIC, 'update', { headline: 'café ☕', n: 1 });
  assert.equal(res.status, 200);
  assert.deepEqual((await pubA)[0], { headline: 'café ☕', n: 1 });
  assert.deepEqual((await pubB)[0], { headline: 'café ☕', n: 1 });

  const presA = nextEvent(a.presence, 'announce', { what: 'announce on the presence channel at A' });
  await rest.trigger(PRESENCE, 'announce', { text: 'hello members' });
  const [data, meta] = await presA;
  assert.deepEqual(data, { text: 'hello members' });
  assert.equal(meta?.user_id, undefined, 'a server event carries no user_id');

  // A string payload is passed through as is.
  const plain = nextEvent(b.pub, 'plain', { what: 'plain-text event' });
  await rest.trigger(PUBLIC, 'plain', 'just text');
  assert.equal((await plain)[0], 'just text');
});

test('one trigger to several channels, and /batch_events', async (t) => {
  const [a] = await twoSubscribers(t);
  const rest = restClient(server);

  const onPub = nextEvent(a.pub, 'multi', { what: 'multi on the public channel' });
  const onPres = nextEvent(a.presence, 'multi', { what: 'multi on the presence channel' });
  await rest.trigger([PUBLIC, PRESENCE], 'multi', { k: 'v' });
  assert.deepEqual((await onPub)[0], { k: 'v' });
  assert.deepEqual((await onPres)[0], { k: 'v' });

  const b1 = nextEvent(a.pub, 'batch-1', { what: 'batch-1' });
  const b2 = nextEvent(a.presence, 'batch-2', { what: 'batch-2' });
  const res = await rest.triggerBatch([
    { channel: PUBLIC, name: 'batch-1', data: { i: 1 } },
    { channel: PRESENCE, name: 'batch-2', data: { i: 2 } },
  ]);
  assert.equal(res.status, 200);
  assert.deepEqual((await b1)[0], { i: 1 });
  assert.deepEqual((await b2)[0], { i: 2 });
});

test('socket_id excludes that connection only', async (t) => {
  const [a, b] = await twoSubscribers(t);
  const rest = restClient(server);

  const missedAtA = record(a.pub, 'excluded');
  const atB = nextEvent(b.pub, 'excluded', { what: 'excluded event at B' });
  await rest.trigger(PUBLIC, 'excluded', { n: 1 }, { socket_id: a.client.connection.socket_id });
  assert.deepEqual((await atB)[0], { n: 1 });

  // Barrier: the REST call above returned before this one was sent, so A's
  // connection would have received `excluded` before `after`.
  const afterAtA = nextEvent(a.pub, 'after', { what: 'the follow-up event at A' });
  await rest.trigger(PUBLIC, 'after', {});
  await afterAtA;
  assert.equal(missedAtA.calls.length, 0, 'the excluded socket received the event');
  missedAtA.stop();

  // The same in a batch entry, on the presence channel.
  const missedInBatch = record(b.presence, 'batch-excl');
  const batchAtA = nextEvent(a.presence, 'batch-excl', { what: 'batch-excl at A' });
  await rest.triggerBatch([
    { channel: PRESENCE, name: 'batch-excl', data: { m: 2 }, socket_id: b.client.connection.socket_id },
  ]);
  await batchAtA;
  const after2 = nextEvent(b.presence, 'after-2', { what: 'the follow-up event at B' });
  await rest.trigger(PRESENCE, 'after-2', {});
  await after2;
  assert.equal(missedInBatch.calls.length, 0, 'the socket excluded in a batch entry received the event');
  missedInBatch.stop();
});
