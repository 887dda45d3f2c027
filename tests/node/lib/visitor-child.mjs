// A visitor in its own process, so a test can SIGKILL it (the server then
// sees the TCP connection end without a WebSocket close frame), or give it
// an environment of its own (NODE_EXTRA_CA_CERTS, read only at start, for a
// test CA). Config comes from env (see presence.test.mjs, tls.test.mjs;
// VISITOR_TLS=1 for wss:// and an https:// auth endpoint); prints
// `joined SOCKET_ID` once subscribed, then `member ID` for everyone in the
// roster and `added ID` for each member_added; or `error ...` and exits 1.
import PusherClient from 'pusher-js';

const env = process.env;
const client = new PusherClient(env.VISITOR_KEY, {
  cluster: 'local',
  wsHost: env.VISITOR_HOST,
  wsPort: Number(env.VISITOR_PORT),
  wssPort: Number(env.VISITOR_PORT),
  forceTLS: env.VISITOR_TLS === '1',
  enabledTransports: ['ws'],
  enableStats: false, // never report to Pusher's stats host
  channelAuthorization: {
    endpoint: env.VISITOR_AUTH,
    transport: 'ajax',
    params: { visitor_id: env.VISITOR_ID },
  },
});
const channel = client.subscribe(env.VISITOR_CHANNEL);
channel.bind('pusher:subscription_succeeded', (members) => {
  process.stdout.write(`joined ${client.connection.socket_id}\n`);
  members.each((m) => process.stdout.write(`member ${m.id}\n`));
});
channel.bind('pusher:member_added', (m) => process.stdout.write(`added ${m.id}\n`));
channel.bind('pusher:subscription_error', (err) => {
  process.stdout.write(`error ${JSON.stringify(err)}\n`);
  process.exit(1);
});
