// IPv6 (issue 12): a client that has IPv6 only. ringcast runs on the host with
// `media.allow_ipv6` and the default bind, so each shard is one dual-stack socket on `[::]` and
// the answers offer the host's IPv4 and (non-link-local) IPv6 addresses; HTTP listens on `[::]`.
// Headless Chromium runs inside a network namespace whose one interface has an IPv6 address only
// (a veth to the host on a ULA /64, see netns.mjs), opens publish.html and watch.html at the host
// end's IPv6 address, publishes over WHIP and plays over WHEP. Passes when the viewer decodes a
// growing number of frames and both pages' selected candidate pairs end at the host end's IPv6
// address (the only one the namespace can reach).
//
// Needs root, `ip` (iproute2) and IPv6 on the host; skips with the reason otherwise. The
// namespace and the veth pair are removed when it ends, also on failure or Ctrl-C.
// Run alone: node --test tests/browser/ipv6.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ipv6OnlyNetns, ipv6Unavailable, netnsUnavailable } from './netns.mjs';
import {
  launchInNetnsFor, openPublishAndWatch, ringcastOf, selectedPair, startServer, waitForPlayback,
} from './ringcast.mjs';

test('ipv6: chromium in an IPv6-only namespace publishes and plays through dual-stack shards', { timeout: 90_000 }, async (t) => {
  const why = ipv6Unavailable() || netnsUnavailable();
  if (why) {
    process.stderr.write(`ipv6 browser test skipped: ${why}\n`);
    t.skip(why);
    return;
  }
  const ns = ipv6OnlyNetns({ tag: 'v6' });
  const logs = [];
  let server = null;
  let browser = null;
  let pub = null;
  let view = null;
  try {
    server = await startServer({
      host: '::',
      reach: ns.hostAddr,
      env: {
        // The defaults but allow_ipv6: the feature under test picks `[::]` and the addresses.
        RINGCAST_MEDIA_BIND: '0.0.0.0',
        RINGCAST_MEDIA_ALLOW_IPV6: 'true',
        RINGCAST_MEDIA_PIN_THREADS: 'false',
      },
    });
    const stats = await (await fetch(`${server.base}/api/stats`)).json();
    for (const shard of stats.shards) {
      assert.match(shard.socket, /^\[::\]:\d+$/, `shard ${shard.id} should be dual-stack: ${JSON.stringify(shard)}`);
      const port = shard.socket.split(':').at(-1);
      assert.ok(shard.candidates.includes(`[${ns.hostAddr}]:${port}`), `shard ${shard.id} should offer ${ns.hostAddr}: ${shard.candidates}`);
      assert.ok(shard.candidates.some((c) => !c.startsWith('[')), `shard ${shard.id} should offer IPv4 too: ${shard.candidates}`);
    }
    browser = await launchInNetnsFor(ns.name, server);
    ({ pub, view } = await openPublishAndWatch(browser, server, 'ipv6', logs));
    const frames = await waitForPlayback(view, 40_000);
    for (const [name, page] of [['publisher', pub], ['viewer', view]]) {
      const pair = await selectedPair(page);
      t.diagnostic(`${name}: selected pair ${JSON.stringify(pair)}`);
      assert.ok(pair, `${name} has no selected candidate pair`);
      assert.ok(pair.remoteIp.includes(':'), `${name}'s selected pair should end at an IPv6 address: ${pair.remoteAddress}`);
      assert.equal(pair.remoteIp, ns.hostAddr, `${name} should reach the server at the host end's address`);
    }
    const more = await waitForPlayback(view, 10_000);
    assert.ok(more > frames, `frames decoded should keep growing (${frames} then ${more})`);
    t.diagnostic(`viewer decoded ${more} frames over IPv6`);
  } catch (e) {
    process.stderr.write([
      '----- ipv6 test: failure details -----',
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
