// Factories for the two official libraries under test, pointed at a local
// whosin server: pusher-js (the browser/node client) and pusher (the server
// REST SDK). Clients are disconnected in the owning test's teardown.
import { createHmac, randomUUID } from 'node:crypto';
import PusherClient from 'pusher-js';
import PusherRest from 'pusher';
import { DEFAULT_TIMEOUT_MS } from './wait.mjs';

export const PRESENCE = 'presence-whosin';

/** A visitor id the auth endpoint should accept as-is (a UUID). */
/**
 * The token the server gives with a visitor id (HMAC-SHA256 of
 * "whosin-visitor-id:" + id under the app secret, hex): what a page that
 * was given this id earlier holds.
 */
export function visitorToken(server, id) {
  return createHmac('sha256', server.secret).update(`whosin-visitor-id:${id}`).digest('hex');
}

export function newVisitorId() {
  return randomUUID();
}

/**
 * A pusher-js client. By default it authorizes through the server's
 * /pusher/auth with the ajax transport (pusher-js's node build bundles an
 * XMLHttpRequest implementation, so no global is needed) and sends
 * `visitor_id` (and `name` if given) as extra form params.
 * @param {import('node:test').TestContext} t  owner; disconnects in t.after
 * @param {import('./server.mjs').WhosinServer} server
 * @param {object} [o]
 * @param {string} [o.visitorId]
 * @param {string} [o.name]
 * @param {Function} [o.customHandler]  pusher-js channelAuthorization.customHandler
 * @param {string} [o.key]  app key to connect with (default: the server's)
 */
export function newClient(t, server, o = {}) {
  const params = {};
  if (o.visitorId !== undefined) params.visitor_id = o.visitorId;
  // A page keeps the token the server gave with its visitor id and sends
  // both; without it a present id is not signed again (it is given a fresh
  // one). `bare: true` sends the id alone, as an older page would.
  if (o.visitorId !== undefined && !o.bare) params.visitor_token = visitorToken(server, o.visitorId);
  if (o.name !== undefined) params.name = o.name;
  Object.assign(params, o.params ?? {});
  const channelAuthorization = o.customHandler
    ? { customHandler: o.customHandler }
    : { endpoint: server.authEndpoint, transport: 'ajax', params };
  const client = new PusherClient(o.key ?? server.key, {
    cluster: 'local', // required by pusher-js 8 even though wsHost overrides it
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    enableStats: false, // never report to Pusher's stats host
    channelAuthorization,
  });
  // Disconnect in the test's teardown, and in any case before the server
  // is stopped (so pusher-js does not start reconnecting to a dead port).
  t.after(() => client.disconnect());
  server.onStop(() => client.disconnect());
  return client;
}

/** Wait until the client's connection state is `connected`. */
export function connected(client, timeout = DEFAULT_TIMEOUT_MS) {
  const conn = client.connection;
  if (conn.state === 'connected') return Promise.resolve(client);
  return new Promise((resolve, reject) => {
    const errors = [];
    const onError = (err) => errors.push(err);
    const onState = ({ current }) => {
      if (current === 'connected') finish(null);
      else if (current === 'failed' || current === 'unavailable') {
        finish(new Error(`connection went ${current}; errors: ${JSON.stringify(errors)}`));
      }
    };
    const timer = setTimeout(() => finish(new Error(
      `not connected after ${timeout} ms (state ${conn.state}); errors: ${JSON.stringify(errors)}`)), timeout);
    function finish(err) {
      clearTimeout(timer);
      conn.unbind('state_change', onState);
      conn.unbind('error', onError);
      if (err) reject(err); else resolve(client);
    }
    conn.bind('state_change', onState);
    conn.bind('error', onError);
  });
}

/**
 * Subscribe and wait for `pusher:subscription_succeeded`; a
 * `pusher:subscription_error` rejects with its data. Resolves with the channel.
 */
export function subscribe(client, name, timeout = DEFAULT_TIMEOUT_MS) {
  return subscriptionOutcome(client, name, timeout).then(({ ok, channel, data }) => {
    if (!ok) throw new Error(`subscription to ${name} failed: ${JSON.stringify(data)}`);
    return channel;
  });
}

/** Subscribe and wait for `pusher:subscription_error`; resolves with its data. */
export function subscribeExpectingError(client, name, timeout = DEFAULT_TIMEOUT_MS) {
  return subscriptionOutcome(client, name, timeout).then(({ ok, data }) => {
    if (ok) throw new Error(`subscription to ${name} succeeded but an error was expected`);
    return data;
  });
}

function subscriptionOutcome(client, name, timeout) {
  const channel = client.subscribe(name);
  return new Promise((resolve, reject) => {
    const onOk = (data) => finish({ ok: true, channel, data });
    const onErr = (data) => finish({ ok: false, channel, data });
    // A pusher:error on the connection (e.g. the server answering a bad
    // subscribe that way instead of with subscription_error) is reported.
    const connErrors = [];
    const onConnErr = (err) => connErrors.push(err);
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no subscription_succeeded/subscription_error for ${name} within ${timeout} ms` +
        ` (connection state ${client.connection.state}; connection errors: ${JSON.stringify(connErrors)})`));
    }, timeout);
    function cleanup() {
      clearTimeout(timer);
      channel.unbind('pusher:subscription_succeeded', onOk);
      channel.unbind('pusher:subscription_error', onErr);
      client.connection.unbind('error', onConnErr);
    }
    function finish(outcome) {
      cleanup();
      resolve(outcome);
    }
    channel.bind('pusher:subscription_succeeded', onOk);
    channel.bind('pusher:subscription_error', onErr);
    client.connection.bind('error', onConnErr);
  });
}

/** Connect a new client and join a presence channel: { client, channel }. */
export async function joinPresence(t, server, o = {}, name = PRESENCE) {
  const client = newClient(t, server, o);
  await connected(client);
  const channel = await subscribe(client, name);
  return { client, channel };
}

/** The members of a pusher-js presence channel as { id: info }. */
export function memberMap(channel) {
  const out = {};
  channel.members.each((m) => { out[m.id] = m.info; });
  return out;
}

/** The pusher server SDK for this server (optionally with a wrong secret). */
export function restClient(server, { secret = server.secret } = {}) {
  return new PusherRest({
    appId: server.appId,
    key: server.key,
    secret,
    host: server.host,
    port: server.port,
    useTLS: false,
    timeout: DEFAULT_TIMEOUT_MS,
  });
}

/** GET a REST path through the SDK and parse the JSON body. */
export async function restGet(rest, path, params) {
  const res = await rest.get({ path, params });
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`GET ${path}: status ${res.status}, body is not JSON: ${text}`);
  }
}

/** Hex HMAC-SHA256, as used for Pusher auth strings. */
export function hmacHex(secret, message) {
  return createHmac('sha256', secret).update(message).digest('hex');
}

/** POST the auth endpoint like pusher-js's ajax transport does. */
export async function postAuth(server, form) {
  const res = await fetch(server.authEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
    signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** GET the auth endpoint like pusher-js's JSONP transport does. */
export async function getAuthJsonp(server, query) {
  const url = `${server.authEndpoint}?${new URLSearchParams(query).toString()}`;
  const res = await fetch(url, { signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS) });
  return { url, status: res.status, headers: res.headers, text: await res.text() };
}
