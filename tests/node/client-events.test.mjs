// 4. Client events on a presence channel: delivered to the other members
// with the sender's user_id, never echoed to the sending connection.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { joinPresence, newVisitorId } from './lib/clients.mjs';
import { nextEvent, record } from './lib/wait.mjs';

let server;
before(async () => { server = await startServer({ extraArgs: ['--enable-client-events'] }); });
after(async () => { await server?.stop(); });

test('client-hello from A reaches B with user_id, and not A', async (t) => {
  const idA = newVisitorId();
  const idB = newVisitorId();
  const a = await joinPresence(t, server, { visitorId: idA });
  const a2 = await joinPresence(t, server, { visitorId: idA }); // A's second tab
  const b = await joinPresence(t, server, { visitorId: idB });

  const echoAtA = record(a.channel, 'client-hello');
  const atA2 = nextEvent(a2.channel, 'client-hello', { what: "client-hello at A's other connection" });
  const atB = nextEvent(b.channel, 'client-hello', { what: 'client-hello at B' });
  const payload = { text: 'hi there', n: 42, nested: { ok: true } };
  assert.equal(a.channel.trigger('client-hello', payload), true, 'pusher-js accepted the event');

  // pusher-js 8 calls bound callbacks with (data, metadata).
  const [data, meta] = await atB;
  assert.deepEqual(data, payload);
  assert.equal(meta?.user_id, idA, `metadata was ${JSON.stringify(meta)}`);

  // Pusher excludes only the sending socket, not the sender's other connections.
  const [data2, meta2] = await atA2;
  assert.deepEqual(data2, payload);
  assert.equal(meta2?.user_id, idA);

  // Barrier: B answers after it got the hello, so an echo of the hello to A
  // would have been queued on A's connection before this answer.
  const ackAtA = nextEvent(a.channel, 'client-ack', { what: 'client-ack at A' });
  assert.equal(b.channel.trigger('client-ack', { re: 'hello' }), true);
  const [ack, ackMeta] = await ackAtA;
  assert.deepEqual(ack, { re: 'hello' });
  assert.equal(ackMeta?.user_id, idB);

  assert.equal(echoAtA.calls.length, 0, `A received its own event: ${JSON.stringify(echoAtA.calls)}`);
  echoAtA.stop();
});
