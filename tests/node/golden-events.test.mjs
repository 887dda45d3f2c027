// The golden event stream (tests/golden/presence-events.json) through the
// page's transport (ui/transport.js): the same server frames must give the
// same events as the Rust session (crates/client/tests/golden.rs) and so as
// `whosin join --json` and the desktop window.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PresenceTransport } from '../../ui/transport.js';

const golden = JSON.parse(readFileSync(new URL('../golden/presence-events.json', import.meta.url), 'utf8'));

test('the page transport reports the golden events', () => {
  let got = [];
  const t = new PresenceTransport({
    wsUrl: 'ws://unused', authEndpoint: '/unused', channel: golden.channel, params: {},
    onEvent: (e) => got.push(e),
  });
  t.meId = golden.me;
  t.activityMs = 3_600_000; // no ping timer fires during the test
  try {
    for (const step of golden.steps) {
      got = [];
      // Pusher double-encodes data: the frame carries it as a string.
      t.onFrame(JSON.stringify({ ...step.frame, data: JSON.stringify(step.frame.data) }));
      assert.deepEqual(got, step.events, step.what);
    }
  } finally {
    t.stop();
  }
});
