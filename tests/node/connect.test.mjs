// 1. pusher-js reaches `connected` against whosin; basic server liveness.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { connected, newClient } from './lib/clients.mjs';
import { nextEvent } from './lib/wait.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

test('startup prints exactly one stdout line and /health answers 200', async () => {
  assert.deepEqual(server.stdoutLines, [`listening on 127.0.0.1:${server.port}`]);
  const res = await fetch(`${server.baseUrl}/health`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
});

test('pusher-js connects and gets a protocol socket_id', async (t) => {
  const client = newClient(t, server);
  await connected(client);
  assert.equal(client.connection.state, 'connected');
  assert.match(client.connection.socket_id, /^\d+\.\d+$/);

  // A second connection gets a different socket id.
  const other = newClient(t, server);
  await connected(other);
  assert.match(other.connection.socket_id, /^\d+\.\d+$/);
  assert.notEqual(other.connection.socket_id, client.connection.socket_id);
});

test('an unknown app key is refused with 4001 and pusher-js stops', async (t) => {
  const client = newClient(t, server, { key: 'not-the-key' });
  // pusher-js maps 4000-4099 to "refused": emits the error, then goes to
  // `disconnected` without retrying. During the handshake the PusherError
  // comes wrapped in a WebSocketError.
  const codeOf = (e) => e?.data?.code ?? e?.error?.data?.code;
  const [err] = await nextEvent(client.connection, 'error', {
    filter: (e) => codeOf(e) != null,
    what: 'a PusherError with a code for the unknown key',
  });
  assert.equal(codeOf(err), 4001, `error was ${JSON.stringify(err)}`);
  if (client.connection.state !== 'disconnected') {
    await nextEvent(client.connection, 'state_change', {
      filter: (s) => s.current === 'disconnected',
      what: 'state disconnected after the refusal',
    });
  }
  assert.equal(client.connection.state, 'disconnected');
});
