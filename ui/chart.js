// The count history chart: an inline SVG path drawn from the server's
// per-minute points (peak and last value of each minute with a change), no
// chart library. Pure functions, so they are tested without a browser
// (tests/node/chart.test.mjs); the page and the desktop window draw with them.

export const DAY_S = 24 * 60 * 60;

/**
 * The step line of a channel's count over the window ending at `now`.
 * @param {{t:number,peak:number,last:number}[]} points  minutes with a change, any order
 * @param {object} o
 * @param {number} o.now       Unix seconds at the right edge
 * @param {number} o.count     the count now (carried to the right edge)
 * @param {number} [o.span]    seconds shown (default a day)
 * @param {number} [o.width]   drawing width
 * @param {number} [o.height]  drawing height
 * @returns {{d: string, max: number, peak: {value:number, t:number}|null}}
 */
export function historyPath(points, { now, count, span = DAY_S, width = 300, height = 60 }) {
  const from = now - span;
  const shown = points
    .filter((p) => p.t + 60 > from && p.t <= now)
    .sort((a, b) => a.t - b.t);
  let peak = null;
  for (const p of shown) {
    if (!peak || p.peak > peak.value) peak = { value: p.peak, t: p.t };
  }
  const max = Math.max(1, count, peak ? peak.value : 0);
  const x = (t) => round(((Math.min(Math.max(t, from), now) - from) / span) * width);
  const y = (v) => round(height - (v / max) * height);
  if (shown.length === 0) {
    return { d: `M0 ${y(count)} H${width}`, max, peak };
  }
  const first = shown[0];
  let d = `M${x(first.t)} ${y(first.peak)}`;
  shown.forEach((p, i) => {
    if (i > 0) d += ` H${x(p.t)} V${y(p.peak)}`;
    d += ` H${x(p.t + 60)} V${y(p.last)}`;
  });
  d += ` H${x(now)} V${y(count)}`;
  return { d, max, peak };
}

const round = (v) => Math.round(v * 10) / 10;

/** "12:05" for Unix seconds, in the viewer's time zone. */
export function clock(t) {
  const date = new Date(t * 1000);
  return `${String(date.getHours()).padStart(2, '0')}:${String(date.getMinutes()).padStart(2, '0')}`;
}
