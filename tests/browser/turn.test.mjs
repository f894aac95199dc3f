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
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { noCoturn, startCoturn } from './coturn.mjs';
import {
  CHROMIUM, CHROMIUM_ARGS, recordConsole, ringcastOf, selectedPair, startServer, waitForPlayback,
} from './ringcast.mjs';

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
