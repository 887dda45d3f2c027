// A pusher-js visitor and a whosin (Rust client) visitor on the same channel
// see each other: the Rust side is `whosin join --json`, read line by line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { startServer, whosinBin } from './lib/server.mjs';
import { PRESENCE, joinPresence, memberMap, newVisitorId } from './lib/clients.mjs';
import { nextEvent, withTimeout } from './lib/wait.mjs';

// Starts `whosin join --json` and returns a function that waits for the next
// JSON line matching a predicate.
function rustVisitor(t, server, args) {
  const child = spawn(whosinBin(), [
    'join', '--json', '--url', `ws://${server.host}:${server.port}`, '--key', server.key,
    '--ip-lookup', 'none', ...args,
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const v = JSON.parse(line);
    lines.push(v);
    for (const w of [...waiters]) if (w.pred(v)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(v); }
  });
  const next = (what, pred) => {
    const found = lines.find(pred);
    if (found) { lines.splice(lines.indexOf(found), 1); return Promise.resolve(found); }
    return withTimeout(new Promise((resolve) => waiters.push({ pred, resolve })), 5_000, what);
  };
  return { child, next, exited };
}

test('a pusher-js visitor and a whosin visitor see each other', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());

  const rust = rustVisitor(t, server, ['--auth-endpoint', server.authEndpoint, '--visitor-id', 'rusty', '--name', 'Rusty']);
  const snap = await rust.next('rust snapshot', (v) => v.event === 'snapshot');
  assert.equal(snap.count, 1);
  assert.equal(snap.me.id, 'rusty');

  const jsId = newVisitorId();
  const js = await joinPresence(t, server, { visitorId: jsId });
  // pusher-js sees the Rust visitor with the name it chose and the IP the server saw.
  const members = memberMap(js.channel);
  assert.equal(js.channel.members.count, 2);
  assert.equal(members.rusty?.name, 'Rusty');
  assert.equal(members.rusty?.ip, '127.0.0.1');
  // The Rust visitor sees pusher-js arrive...
  const added = await rust.next('member_added', (v) => v.event === 'member_added');
  assert.equal(added.member.id, jsId);
  assert.equal(added.count, 2);
  // ...and leave.
  js.client.disconnect();
  const removed = await rust.next('member_removed', (v) => v.event === 'member_removed');
  assert.equal(removed.member.id, jsId);
  assert.equal(removed.count, 1);

  // And pusher-js sees the Rust visitor leave when it is interrupted.
  const js2 = await joinPresence(t, server, { visitorId: newVisitorId() });
  const gone = nextEvent(js2.channel, 'pusher:member_removed', { filter: (m) => m.id === 'rusty', what: 'rusty removed' });
  rust.child.kill('SIGTERM');
  await gone;
  assert.equal(js2.channel.members.count, 1);
  assert.deepEqual(await rust.exited, { code: 0, signal: null });
});
