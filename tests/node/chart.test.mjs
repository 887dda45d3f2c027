// The history chart's path, from a known series (ui/chart.js, shared by the
// page and the desktop window).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DAY_S, historyPath } from '../../ui/chart.js';

test('a known series draws its steps, its peak and the live count at the right edge', () => {
  const now = 1_800_000_000;
  const t0 = now - DAY_S / 2; // the middle of the window
  const points = [
    { t: t0 + 60, peak: 4, last: 1 },
    { t: t0, peak: 2, last: 2 },
  ];
  const { d, max, peak } = historyPath(points, { now, count: 3, width: 1440, height: 40 });
  assert.equal(max, 4);
  assert.deepEqual(peak, { value: 4, t: t0 + 60 });
  // x: one unit per minute over 1440; y: 40 - v * 10.
  assert.equal(d, 'M720 20 H721 V20 H721 V0 H722 V30 H1440 V10');
});

test('no points: a flat line at the count; old points fall outside the window', () => {
  const now = 1_800_000_000;
  assert.equal(historyPath([], { now, count: 0, width: 100, height: 10 }).d, 'M0 10 H100');
  const old = [{ t: now - DAY_S - 120, peak: 9, last: 9 }];
  const r = historyPath(old, { now, count: 1, width: 100, height: 10 });
  assert.equal(r.peak, null);
  assert.equal(r.max, 1);
});
