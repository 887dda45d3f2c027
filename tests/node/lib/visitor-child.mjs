// A visitor in its own process, so a test can SIGKILL it: the server then
// sees the TCP connection end without a WebSocket close frame.
// Config comes from env (see spawnVisitor in presence.test.mjs); prints
// `joined SOCKET_ID` once subscribed, or `error ...` and exits 1.
import PusherClient from 'pusher-js';

const env = process.env;
const client = new PusherClient(env.VISITOR_KEY, {
  cluster: 'local',
  wsHost: env.VISITOR_HOST,
  wsPort: Number(env.VISITOR_PORT),
  forceTLS: false,
  enabledTransports: ['ws'],
  enableStats: false, // never report to Pusher's stats host
  channelAuthorization: {
    endpoint: env.VISITOR_AUTH,
    transport: 'ajax',
    params: { visitor_id: env.VISITOR_ID },
  },
});
const channel = client.subscribe(env.VISITOR_CHANNEL);
channel.bind('pusher:subscription_succeeded', () => {
  process.stdout.write(`joined ${client.connection.socket_id}\n`);
});
channel.bind('pusher:subscription_error', (err) => {
  process.stdout.write(`error ${JSON.stringify(err)}\n`);
  process.exit(1);
});
