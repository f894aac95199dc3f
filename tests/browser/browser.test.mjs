// End-to-end: headless Chromium publishes a fake camera over WHIP (publish.html) and a second
// page plays it over WHEP (watch.html), through a real ringcast server on 127.0.0.1.
//
// Run from the repository root:  node --test tests/browser/
// Env: RINGCAST_BIN (default $CARGO_TARGET_DIR/debug/ringcast, else target/debug/ringcast),
// CHROMIUM (default /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, recordConsole, ringcastOf, startServer, waitForPlayback } from './ringcast.mjs';

let server = null;      // { proc, base, log: string[], exited, stop() }
let browser = null;
let failed = false;

function serverLog() {
  return server ? server.log.join('') : '(server not started)';
}

before(async () => {
  server = await startServer();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.stop();
  if (failed) {
    process.stderr.write(`\n----- ringcast server output -----\n${serverLog()}\n----- end of server output -----\n`);
  }
});

async function publishAndWatch(t, codec, expectMime) {
  const stream = `t-${codec}`;
  const base = server.base;
  const context = await browser.newContext();
  const logs = [];
  const pub = await context.newPage();
  const view = await context.newPage();
  recordConsole(pub, 'publish', logs);
  recordConsole(view, 'watch', logs);
  try {
    await pub.goto(`${base}/publish/${stream}?codec=${codec}&autostart=1`);
    await view.goto(`${base}/watch/${stream}`);
    await waitForPlayback(view, 30_000);
    const rc = await ringcastOf(view);
    assert.ok(
      String(rc.codec || '').toUpperCase().includes(expectMime),
      `viewer codec ${JSON.stringify(rc.codec)} should contain ${expectMime}`,
    );
    t.diagnostic(`viewer: ${JSON.stringify(rc)}`);
  } catch (e) {
    failed = true;
    const report = [
      `----- ${codec}: failure details -----`,
      `publish window.ringcast: ${JSON.stringify(await ringcastOf(pub), null, 2)}`,
      `watch window.ringcast: ${JSON.stringify(await ringcastOf(view), null, 2)}`,
      'console:',
      ...logs.map((l) => '  ' + l),
      '',
    ].join('\n');
    process.stderr.write(report);
    throw e;
  } finally {
    await context.close().catch(() => {});
  }
}

test('vp8: chromium publishes over WHIP and another page plays over WHEP', async (t) => {
  await publishAndWatch(t, 'vp8', 'VP8');
});

test('h264: chromium publishes over WHIP and another page plays over WHEP', async (t) => {
  await publishAndWatch(t, 'h264', 'H264');
});
