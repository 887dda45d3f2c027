// Waiting helpers. Tests never sleep for a fixed time: they wait for an event
// or a condition, and every wait has a deadline that fails with a message
// saying what was awaited.

export const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * Resolve with the value of `predicate()` once it is truthy; poll every
 * `interval` ms (for conditions that have no event, e.g. a REST query).
 * `predicate` may be async. The last value or error is put in the failure.
 */
export async function waitFor(predicate, { timeout = DEFAULT_TIMEOUT_MS, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await predicate();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? `${last.name}: ${last.message}` : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/**
 * Wait for the next `event` on a pusher-js bindable (a Channel, the
 * connection, or the Pusher instance) for which `filter(...args)` holds.
 * Resolves with the callback's arguments as an array. Bind this *before*
 * doing what triggers the event.
 */
export function nextEvent(target, event, { timeout = DEFAULT_TIMEOUT_MS, filter = () => true, what } = {}) {
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      target.unbind(event, onEvent);
      resolve(args);
    };
    const timer = setTimeout(() => {
      target.unbind(event, onEvent);
      reject(new Error(`timed out after ${timeout} ms waiting for ${what ?? `event ${event}`}`));
    }, timeout);
    target.bind(event, onEvent);
  });
}

/**
 * Record every `event` on a pusher-js bindable; `calls` holds each callback's
 * argument list. Call `stop()` to unbind.
 */
export function record(target, event) {
  const calls = [];
  const onEvent = (...args) => calls.push(args);
  target.bind(event, onEvent);
  return { calls, stop: () => target.unbind(event, onEvent) };
}

/** Reject if `promise` has not settled within `timeout` ms. */
export function withTimeout(promise, timeout, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
