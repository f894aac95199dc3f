// A real coturn for the browser tests (turn.test.mjs, ice-page.test.mjs): started on loopback
// with a generated config that checks credentials with a shared secret (`use-auth-secret`, the
// TURN REST API), as ringcast's `[[ice_servers]] secret` mints them.
//
// Needs Debian's `coturn` (`turnserver`; scripts/test installs it): tests skip with `noCoturn`.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ringcast.mjs';

const TURNSERVER = process.env.TURNSERVER || 'turnserver';

/** Why coturn tests skip (a string), or false when `turnserver` runs. */
export const noCoturn = spawnSync(TURNSERVER, ['--version'], { timeout: 10_000 }).error
  ? `${TURNSERVER} not found: install Debian's coturn (apt-get install coturn; scripts/test does)`
  : false;

/**
 * Starts coturn on 127.0.0.1 with a generated config in `dir`: a free port, a random secret,
 * loopback peers allowed (ringcast is on loopback too; coturn then insists on `no-cli`), no
 * TLS/DTLS listeners. Resolves once it answers a STUN Binding request. Returns
 * `{ port, secret, output(), stop() }`.
 */
export async function startCoturn(dir) {
  const port = await freePort();
  const minPort = 20000 + Math.floor(Math.random() * 9000);
  const secret = randomBytes(16).toString('hex');
  const conf = path.join(dir, 'turnserver.conf');
  const logFile = path.join(dir, 'turnserver.log');
  writeFileSync(conf, [
    'listening-ip=127.0.0.1',
    'relay-ip=127.0.0.1',
    `listening-port=${port}`,
    `min-port=${minPort}`,
    `max-port=${minPort + 200}`,
    'realm=ringcast.test',
    'use-auth-secret',
    `static-auth-secret=${secret}`,
    'allow-loopback-peers',
    'no-cli',
    'no-tls',
    'no-dtls',
    'fingerprint',
    `log-file=${logFile}`,
    'simple-log',
    `pidfile=${path.join(dir, 'turnserver.pid')}`,
    `userdb=${path.join(dir, 'turndb')}`,
    '',
  ].join('\n'));
  const out = [];
  const proc = spawn(TURNSERVER, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', (d) => out.push(d.toString()));
  proc.stderr.on('data', (d) => out.push(d.toString()));
  let exited = null;
  const orphaned = () => proc.kill('SIGKILL');
  process.on('exit', orphaned);
  proc.on('exit', (code, signal) => { exited = { code, signal }; process.off('exit', orphaned); });
  proc.on('error', (e) => { exited = { error: e.message }; });
  const turn = {
    port,
    secret,
    output: () => out.join('') + (existsSync(logFile) ? `\n(log file)\n${readFileSync(logFile, 'utf8')}` : ''),
    stop: async () => {
      if (exited) return;
      const gone = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM');
      const kill = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(kill);
    },
  };
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !exited) {
    if (await stunAnswers(port)) return turn;
    await sleep(200);
  }
  await turn.stop();
  throw new Error(`coturn did not answer STUN on 127.0.0.1:${port} within 15 s (${JSON.stringify(exited)}):\n${turn.output()}`);
}

/** Does something answer a STUN Binding request (RFC 8489) on 127.0.0.1:`port` within 500 ms? */
function stunAnswers(port) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const request = Buffer.alloc(20);
    request.writeUInt16BE(0x0001, 0); // Binding request, no attributes
    request.writeUInt32BE(0x2112a442, 4); // magic cookie
    randomBytes(12).copy(request, 8);
    const done = (ok) => { clearTimeout(timer); sock.close(); resolve(ok); };
    const timer = setTimeout(() => done(false), 500);
    sock.on('message', (msg) => done(msg.length >= 20 && msg.readUInt16BE(0) === 0x0101));
    sock.on('error', () => done(false));
    sock.send(request, port, '127.0.0.1');
  });
}
