// The ICE check page (/ice, issue 12): headless Chromium opens it and it gathers candidates
// with the servers of `GET /api/ice-servers`, then publishes to ringcast once over UDP with all
// its candidates and once relay-only per TURN URL, and reports which connected and the round
// trip. Against a ringcast with no ICE servers: host candidates, UDP and TCP connected.
// With a real coturn (coturn.mjs) in `[[ice_servers]]`: relay candidates from its URL, and the
// relay-only try connected through it, which ringcast counts as a relayed session.
//
// Run alone: node --test tests/browser/ice-page.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { noCoturn, startCoturn } from './coturn.mjs';
import { CHROMIUM, CHROMIUM_ARGS, recordConsole, startServer } from './ringcast.mjs';

test('the /ice page lists host candidates and connects over UDP with a round trip',
  { timeout: 90_000 }, async (t) => {
    await withIcePage(t, {}, async ({ state, stats }) => {
      const hosts = state.candidates.filter((c) => c.type === 'host');
      assert.ok(hosts.length > 0, `host candidates listed: ${JSON.stringify(state.candidates)}`);
      for (const c of hosts) {
        assert.ok(c.port > 0 && c.priority > 0 && c.address, `a full row: ${JSON.stringify(c)}`);
        assert.equal(c.url, '', 'no server produces a host candidate');
      }
      const udp = state.tries.find((x) => x.path === 'udp');
      assert.equal(udp.outcome, 'connected', JSON.stringify(udp));
      assert.ok(typeof udp.rttMs === 'number' && udp.rttMs >= 0 && udp.rttMs < 1000, `rtt ${udp.rttMs}`);
      // The answers carry a passive TCP candidate (media.tcp, on by default): the TCP try,
      // with the answer cut down to it, connects too.
      const tcp = state.tries.find((x) => x.path === 'tcp');
      assert.equal(tcp.outcome, 'connected', JSON.stringify(tcp));
      assert.ok(typeof tcp.rttMs === 'number' && tcp.rttMs >= 0 && tcp.rttMs < 1000, `rtt ${tcp.rttMs}`);
      assert.equal(state.tries.filter((x) => x.path === 'relay').length, 0, 'no TURN server, no relay try');
      // The sessions the page made are gone, and were counted as connected, once over UDP and
      // once over TCP, both to host candidates its offers signalled (Chromium here gathers
      // plain addresses, not mDNS names; its active TCP candidate signals port 9 and connects
      // from an ephemeral port of that address).
      assert.equal(sum(stats, (s) => s.participants), 0, 'the page deleted its sessions');
      assert.equal(sum(stats, (s) => s.connected.udp), 1, JSON.stringify(stats.shards));
      assert.equal(sum(stats, (s) => s.connected.tcp), 1, JSON.stringify(stats.shards));
      assert.equal(sum(stats, (s) => s.connected.host), 2, JSON.stringify(stats.shards));
      assert.equal(sum(stats, (s) => s.connected.prflx), 0, JSON.stringify(stats.shards));
    });
  });

test('the /ice page gets relay candidates from coturn and connects through it',
  { skip: noCoturn, timeout: 120_000 }, async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ringcast-ice-page-'));
    let turn = null;
    try {
      turn = await startCoturn(dir);
      const url = `turn:127.0.0.1:${turn.port}?transport=udp`;
      const config = path.join(dir, 'ringcast.toml');
      writeFileSync(config, [
        '[[ice_servers]]',
        `urls = ["${url}"]`,
        `secret = "${turn.secret}"`,
        '',
      ].join('\n'));
      await withIcePage(t, { RINGCAST_CONFIG: config }, async ({ state, stats }) => {
        const relayed = state.candidates.filter((c) => c.type === 'relay');
        assert.ok(relayed.length > 0, `relay candidates listed: ${JSON.stringify(state)}`);
        assert.ok(relayed.every((c) => c.url === url), `produced by ${url}: ${JSON.stringify(relayed)}`);
        const relay = state.tries.find((x) => x.path === 'relay');
        assert.ok(relay, `a relay try: ${JSON.stringify(state.tries)}`);
        assert.equal(relay.url, url);
        assert.equal(relay.outcome, 'connected', JSON.stringify(relay));
        assert.equal(relay.pair.localType, 'relay', JSON.stringify(relay.pair));
        assert.ok(typeof relay.rttMs === 'number', `rtt ${relay.rttMs}`);
        assert.equal(state.tries.find((x) => x.path === 'udp').outcome, 'connected');
        // The relay-only offer signalled the relay candidate: ringcast typed it so.
        assert.equal(sum(stats, (s) => s.connected.relay), 1, JSON.stringify(stats.shards));
      }, () => turn.output());
    } finally {
      if (turn) await turn.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

/**
 * Starts ringcast with `env`, opens /ice in Chromium, waits for the page to finish, and calls
 * `check` with the page's `window.ringcast` and the server's `/api/stats` after it. On failure
 * prints the page's console, ringcast's output and `extraLog()`.
 */
async function withIcePage(t, env, check, extraLog = () => '') {
  const logs = [];
  let server = null;
  let browser = null;
  let state = null;
  try {
    server = await startServer({ env });
    // Loopback candidates (the server's, and coturn's relay address) need it.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [...CHROMIUM_ARGS, '--allow-loopback-in-peer-connection'],
    });
    const page = await browser.newPage();
    recordConsole(page, 'ice', logs);
    await page.goto(`${server.base}/ice`);
    await page.waitForFunction(() => ['done', 'error'].includes(window.ringcast.state), null, { timeout: 80_000 });
    state = await page.evaluate(() => window.ringcast);
    t.diagnostic(`candidates: ${JSON.stringify(state.candidates)}`);
    t.diagnostic(`tries: ${JSON.stringify(state.tries)}`);
    assert.equal(state.state, 'done', `the page ended in error: ${state.error}`);
    const stats = await (await fetch(`${server.base}/api/stats`)).json();
    await check({ state, stats });
  } catch (e) {
    process.stderr.write([
      '----- ice page test: failure details -----',
      `window.ringcast: ${JSON.stringify(state, null, 2)}`,
      'console:',
      ...logs.map((l) => '  ' + l),
      '----- ringcast output -----',
      server ? server.log.join('') : '(not started)',
      extraLog(),
      '',
    ].join('\n'));
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  }
}

/** The sum over `stats`' shards of `f(shard)`. */
function sum(stats, f) {
  return stats.shards.reduce((n, s) => n + f(s), 0);
}
