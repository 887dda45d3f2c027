// pusher-js over wss:// against `whosin serve --tls-cert --tls-key`, with a
// CA and a server certificate the test makes with the openssl command.
// The visitors run in child processes started with NODE_EXTRA_CA_CERTS (Node
// reads it once, at start), so they trust the test CA and nothing else is
// loosened: certificate checks stay on everywhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startServer } from './lib/server.mjs';
import { PRESENCE, newVisitorId } from './lib/clients.mjs';
import { withTimeout } from './lib/wait.mjs';

const JOIN_TIMEOUT_MS = 10_000;

/** A CA and a certificate for 127.0.0.1 and localhost signed by it, in `dir`. */
function makeCertificates(dir) {
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=whosin node test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', '-new', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' +
    'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '77',
    '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

/** GET over https in this process; resolves with the status or rejects with the TLS error. */
function httpsGet(url, options = {}) {
  return new Promise((resolve, reject) => {
    const req = get(url, options, (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error(`no answer from ${url}`)));
  });
}

/** A pusher-js visitor over wss:// in a child process trusting `ca`. */
function tlsVisitor(t, server, ca, id) {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./lib/visitor-child.mjs', import.meta.url))], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env,
      NODE_EXTRA_CA_CERTS: ca,
      VISITOR_TLS: '1',
      VISITOR_KEY: server.key,
      VISITOR_HOST: server.host,
      VISITOR_PORT: String(server.port),
      VISITOR_AUTH: `https://${server.host}:${server.port}/pusher/auth`,
      VISITOR_ID: id,
      VISITOR_CHANNEL: PRESENCE,
    },
  });
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of [...waiters]) if (w.pred(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
  });
  const next = (what, pred) => {
    const found = lines.find(pred);
    if (found) return Promise.resolve(found);
    return withTimeout(new Promise((resolve) => waiters.push({ pred, resolve })), JOIN_TIMEOUT_MS,
      `${what} (visitor ${id} printed ${JSON.stringify(lines)})`);
  };
  return { lines, next };
}

test('pusher-js joins a presence channel over wss:// and sees a member', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'whosin-node-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = makeCertificates(dir);
  const server = await startServer({ extraArgs: ['--tls-cert', files.cert, '--tls-key', files.key] });
  t.after(() => server.stop());

  // Verification is on: without the CA the certificate is refused, with it
  // the page's host answers.
  const health = `https://${server.host}:${server.port}/health`;
  await assert.rejects(httpsGet(health), (err) => /certificate|self.signed|issuer/i.test(err.code + err.message));
  assert.equal(await httpsGet(health, { ca: readFileSync(files.ca) }), 200);

  const idA = newVisitorId();
  const idB = newVisitorId();
  const a = tlsVisitor(t, server, files.ca, idA);
  const joinedA = await a.next('A to join', (l) => l.startsWith('joined ') || l.startsWith('error '));
  assert.match(joinedA, /^joined \d+\.\d+$/);
  await a.next('A in its own roster', (l) => l === `member ${idA}`);

  const b = tlsVisitor(t, server, files.ca, idB);
  const joinedB = await b.next('B to join', (l) => l.startsWith('joined ') || l.startsWith('error '));
  assert.match(joinedB, /^joined \d+\.\d+$/);
  // B sees A in its roster, and A sees B arrive.
  await b.next('A in B\'s roster', (l) => l === `member ${idA}`);
  await a.next('member_added for B at A', (l) => l === `added ${idB}`);
});
