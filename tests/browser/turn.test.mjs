// TURN through a real coturn (issue 12): coturn on loopback checks credentials with a shared
// secret (`use-auth-secret`, the TURN REST API), ringcast mints them from the same secret
// (`[[ice_servers]] secret`), and headless Chromium publishes over WHIP (publish.html) and
// plays over WHEP (watch.html) with `iceTransportPolicy: "relay"` (`?relay=1`): the pages take
// the servers from `GET /api/ice-servers` before they create their peer connection, so every
// packet goes through coturn. Then the credentials of the viewer's own 201 (its `Link`
// headers) must get a relay allocation from coturn, and a forged one must not.
//
// Needs Debian's `coturn` (`turnserver`; scripts/test installs it); skips without it.
// Run alone: node --test tests/browser/turn.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, CHROMIUM_ARGS, freePort, recordConsole, ringcastOf, selectedPair, startServer,
  waitForPlayback,
} from './ringcast.mjs';

const TURNSERVER = process.env.TURNSERVER || 'turnserver';
const noCoturn = spawnSync(TURNSERVER, ['--version'], { timeout: 10_000 }).error
  ? `${TURNSERVER} not found: install Debian's coturn (apt-get install coturn; scripts/test does)`
  : false;

test('chromium publishes and plays through coturn with relay-only ICE and minted credentials',
  { skip: noCoturn, timeout: 120_000 }, async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ringcast-turn-'));
    const logs = [];
    let turn = null;
    let server = null;
    let browser = null;
    let pub = null;
    let view = null;
    try {
      turn = await startCoturn(dir);
      const config = path.join(dir, 'ringcast.toml');
      writeFileSync(config, [
        '[[ice_servers]]',
        `urls = ["turn:127.0.0.1:${turn.port}?transport=udp"]`,
        `secret = "${turn.secret}"`,
        'credential_ttl_s = 600',
        '',
      ].join('\n'));
      server = await startServer({ env: { RINGCAST_CONFIG: config } });
      // Relay candidates on 127.0.0.1 (coturn's relay address) are dropped without it.
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [...CHROMIUM_ARGS, '--allow-loopback-in-peer-connection'],
      });
      const context = await browser.newContext();
      pub = await context.newPage();
      view = await context.newPage();
      recordConsole(pub, 'publish', logs);
      recordConsole(view, 'watch', logs);

      await pub.goto(`${server.base}/publish/turn?relay=1&autostart=1`);
      await view.goto(`${server.base}/watch/turn?relay=1`);
      const frames = await waitForPlayback(view, 40_000);
      for (const [name, page] of [['publisher', pub], ['viewer', view]]) {
        const pair = await selectedPair(page);
        t.diagnostic(`${name}: selected pair ${JSON.stringify(pair)}`);
        assert.ok(pair, `${name} has no selected candidate pair`);
        assert.equal(pair.local, 'relay', `${name}'s selected pair should be a relay one`);
      }
      const more = await waitForPlayback(view, 10_000);
      assert.ok(more > frames, `frames decoded should keep growing (${frames} then ${more})`);
      t.diagnostic(`viewer decoded ${more} frames through coturn`);

      // The viewer's 201 named the TURN server with credentials minted for its session.
      const links = (await view.evaluate(() => window.ringcast.iceLinks)) || [];
      assert.equal(links.length, 1, `one ice-server link: ${JSON.stringify(links)}`);
      const [link] = links;
      assert.equal(link.url, `turn:127.0.0.1:${turn.port}?transport=udp`);
      assert.match(link.username, /^\d+:[0-9a-f]{4}$/);
      assert.equal(link['credential-type'], 'password');
      const expiry = Number(link.username.split(':')[0]);
      const now = Date.now() / 1000;
      assert.ok(expiry > now + 500 && expiry < now + 700, `expiry ${expiry}, now ${now}`);
      const server1 = { urls: link.url, username: link.username, credential: link.credential };
      const relayed = await relayCandidates(view, server1);
      assert.ok(relayed.length > 0, "coturn should allocate a relay for the 201's credentials");
      const forged = { ...server1, credential: Buffer.from(randomBytes(20)).toString('base64') };
      assert.deepEqual(await relayCandidates(view, forged), [], 'a forged credential gets no relay');
    } catch (e) {
      const report = [
        '----- turn test: failure details -----',
        `publish window.ringcast: ${pub ? JSON.stringify(await ringcastOf(pub), null, 2) : '-'}`,
        `watch window.ringcast: ${view ? JSON.stringify(await ringcastOf(view), null, 2) : '-'}`,
        'console:',
        ...logs.map((l) => '  ' + l),
        '----- ringcast output -----',
        server ? server.log.join('') : '(not started)',
        '----- coturn log -----',
        turn ? turn.output() : '(not started)',
        '',
      ].join('\n');
      process.stderr.write(report);
      throw e;
    } finally {
      if (browser) await browser.close().catch(() => {});
      if (server) await server.stop();
      if (turn) await turn.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

/**
 * Starts coturn on 127.0.0.1 with a generated config in `dir`: a free port, a random secret,
 * loopback peers allowed (ringcast is on loopback too; coturn then insists on `no-cli`), no
 * TLS/DTLS listeners. Resolves once it answers a STUN Binding request. Returns
 * `{ port, secret, output(), stop() }`.
 */
async function startCoturn(dir) {
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

/** The relay candidates a new relay-only peer connection in `page` gathers from `server` (10 s at most). */
function relayCandidates(page, server) {
  return page.evaluate(async (server) => {
    const pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: 'relay' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const relay = [];
    const gathered = new Promise((resolve) => {
      pc.addEventListener('icecandidate', (e) => {
        if (!e.candidate) resolve();
        else if (/ typ relay /.test(e.candidate.candidate)) relay.push(e.candidate.candidate);
      });
      setTimeout(resolve, 10_000);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered;
    pc.close();
    return relay;
  }, server);
}
