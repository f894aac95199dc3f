// ICE over TCP (issue 12): a client whose network drops UDP. ringcast runs on the host with the
// defaults (`media.tcp` on: each shard listens on TCP at its UDP port's number and the answers
// carry a passive TCP candidate), bound to the host end of a veth pair. Headless Chromium runs
// inside the namespace at the other end (netns.mjs), where an nftables rule drops every UDP
// datagram to the server, and opens publish.html and watch.html: it publishes over WHIP and plays
// over WHEP. Passes when the viewer decodes a growing number of frames, both pages' selected
// candidate pairs are TCP to the host end's address, and /api/stats counts the two sessions as
// connected over TCP.
//
// Needs root, `ip` (iproute2) and `nft` (nftables); skips with the reason otherwise. The
// namespace (and with it its nftables rule) and the veth pair are removed when it ends, also on
// failure or Ctrl-C. Run alone: node --test tests/browser/tcp.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { netnsUnavailable, run, vethNetns } from './netns.mjs';
import {
  launchInNetnsFor, openPublishAndWatch, ringcastOf, selectedPair, startServer, waitForPlayback,
} from './ringcast.mjs';

/** Why nftables cannot be used here, or null. */
function nftUnavailable() {
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'needs `nft` (Debian package nftables)';
  }
  return null;
}

test('tcp: chromium whose UDP to the server is dropped publishes and plays over ICE-TCP', { timeout: 90_000 }, async (t) => {
  const why = netnsUnavailable() || nftUnavailable();
  if (why) {
    process.stderr.write(`tcp browser test skipped: ${why}\n`);
    t.skip(why);
    return;
  }
  const ns = vethNetns({ tag: 'tcp' });
  const logs = [];
  let server = null;
  let browser = null;
  let pub = null;
  let view = null;
  try {
    // Inside the namespace: no UDP to the server's address leaves (ICE checks, DTLS, media).
    const nft = (...args) => run('ip', 'netns', 'exec', ns.name, 'nft', ...args);
    nft('add table inet ringcast_tcp');
    nft('add chain inet ringcast_tcp out { type filter hook output priority 0; }');
    nft(`add rule inet ringcast_tcp out ip daddr ${ns.hostAddr} meta l4proto udp counter drop`);

    server = await startServer({ host: ns.hostAddr, env: { RINGCAST_MEDIA_PIN_THREADS: 'false' } });
    browser = await launchInNetnsFor(ns.name, server);
    ({ pub, view } = await openPublishAndWatch(browser, server, 'tcp', logs));
    const frames = await waitForPlayback(view, 40_000);
    for (const [name, page] of [['publisher', pub], ['viewer', view]]) {
      const pair = await selectedPair(page);
      t.diagnostic(`${name}: selected pair ${JSON.stringify(pair)}`);
      assert.ok(pair, `${name} has no selected candidate pair`);
      assert.equal(pair.protocol, 'tcp', `${name}'s selected pair should be TCP: ${JSON.stringify(pair)}`);
      assert.equal(pair.remoteIp, ns.hostAddr, `${name} should reach the server at the host end's address`);
    }
    const more = await waitForPlayback(view, 10_000);
    assert.ok(more > frames, `frames decoded should keep growing (${frames} then ${more})`);
    t.diagnostic(`viewer decoded ${more} frames over TCP`);

    const dropped = nft('list chain inet ringcast_tcp out');
    t.diagnostic(`namespace rule: ${dropped.trim().split('\n').find((l) => l.includes('drop'))?.trim()}`);
    const stats = await (await fetch(`${server.base}/api/stats`)).json();
    const sum = (f) => stats.shards.reduce((n, s) => n + f(s), 0);
    assert.equal(sum((s) => s.connected.tcp), 2, `two sessions connected over TCP: ${JSON.stringify(stats.shards)}`);
    assert.equal(sum((s) => s.connected.udp), 0, 'none over UDP');
    assert.ok(sum((s) => s.tcp.accepted) >= 2, `TCP connections accepted: ${JSON.stringify(stats.shards.map((s) => s.tcp))}`);
  } catch (e) {
    process.stderr.write([
      '----- tcp test: failure details -----',
      `publish window.ringcast: ${pub ? JSON.stringify(await ringcastOf(pub), null, 2) : '-'}`,
      `watch window.ringcast: ${view ? JSON.stringify(await ringcastOf(view), null, 2) : '-'}`,
      'console:',
      ...logs.map((l) => '  ' + l),
      '----- ringcast output -----',
      server ? server.log.join('') : '(not started)',
      '',
    ].join('\n'));
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
    ns.destroy();
  }
});
