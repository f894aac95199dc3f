// End-to-end: headless Chromium publishes a fake camera over WHIP (publish.html) and a second
// page plays it over WHEP (watch.html), through a real ringcast server on 127.0.0.1.
//
// Run from the repository root:  node --test tests/browser/
// Env: RINGCAST_BIN (default $CARGO_TARGET_DIR/debug/ringcast, else target/debug/ringcast),
// CHROMIUM (default /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET_DIR = process.env.CARGO_TARGET_DIR || 'target';
const BIN = path.resolve(ROOT, process.env.RINGCAST_BIN || path.join(TARGET_DIR, 'debug', 'ringcast'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

let server = null;      // { proc, base, log: string[], exited }
let browser = null;
let failed = false;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function serverLog() {
  return server ? server.log.join('') : '(server not started)';
}

async function startServer() {
  if (!existsSync(BIN)) {
    throw new Error(`ringcast binary not found at ${BIN}: run \`cargo build -p ringcast\` or set RINGCAST_BIN`);
  }
  // The media ports are a guess (the server binds base..base+shards); try a few.
  let lastError = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const httpPort = await freePort();
    const mediaBase = 40000 + Math.floor(Math.random() * 20000);
    const log = [];
    const proc = spawn(BIN, [], {
      cwd: ROOT,
      env: {
        // The server reads every RINGCAST_* variable as a config key: pass none of ours.
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RINGCAST_'))),
        RINGCAST_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
        RINGCAST_MEDIA_PORT_BASE: String(mediaBase),
        RINGCAST_MEDIA_SHARDS: '2',
        RINGCAST_MEDIA_BIND: '127.0.0.1',
        // scripts/test runs the suite once per I/O engine.
        RINGCAST_MEDIA_ENGINE: process.env.TEST_ENGINE || 'auto',
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const s = { proc, base: `http://127.0.0.1:${httpPort}`, log, exited: null };
    proc.stdout.on('data', (d) => log.push(d.toString()));
    proc.stderr.on('data', (d) => log.push(d.toString()));
    proc.on('exit', (code, signal) => { s.exited = { code, signal }; });
    proc.on('error', (e) => { s.exited = { error: e.message }; });
    server = s;

    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !s.exited) {
      try {
        const res = await fetch(`${s.base}/healthz`);
        if (res.status === 200) return s;
      } catch { /* not listening yet */ }
      await sleep(100);
    }
    lastError = s.exited
      ? new Error(`ringcast exited early (${JSON.stringify(s.exited)}):\n${log.join('')}`)
      : new Error(`ringcast did not answer GET /healthz with 200 within 20 s:\n${log.join('')}`);
    await stopServer();
    if (!s.exited || !/bind|address|in use/i.test(log.join(''))) break; // only retry port clashes
  }
  throw lastError;
}

async function stopServer() {
  const s = server;
  if (!s || s.exited) return;
  const gone = new Promise((resolve) => s.proc.once('exit', resolve));
  s.proc.kill('SIGTERM');
  const t = setTimeout(() => s.proc.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(t);
}

before(async () => {
  await startServer();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await stopServer();
  if (failed) {
    process.stderr.write(`\n----- ringcast server output -----\n${serverLog()}\n----- end of server output -----\n`);
  }
});

// The page's `window.ringcast`, without the (unserialisable) RTCPeerConnection.
async function ringcastOf(page) {
  return page.evaluate(() => {
    const rc = window.ringcast;
    if (!rc) return null;
    const out = {};
    for (const [k, v] of Object.entries(rc)) if (k !== 'pc') out[k] = v;
    if (rc.pc) {
      out.pc = {
        connectionState: rc.pc.connectionState,
        iceConnectionState: rc.pc.iceConnectionState,
        signalingState: rc.pc.signalingState,
      };
    }
    return out;
  }).catch((e) => `(could not read: ${e.message})`);
}

function recordConsole(page, name, logs) {
  page.on('console', (m) => logs.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[${name}] pageerror: ${e.message}`));
  page.on('requestfailed', (r) => logs.push(`[${name}] requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) logs.push(`[${name}] HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
}

// framesDecoded > 30 and still growing between two readings a second apart.
async function waitForPlayback(page, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let prev = -1;
  while (Date.now() < deadline) {
    const cur = await page.evaluate(() => (window.ringcast && window.ringcast.framesDecoded) || 0);
    if (prev > 30 && cur > prev) return cur;
    prev = cur;
    await sleep(1000);
  }
  throw new Error(`video did not play within ${timeoutMs / 1000} s (last framesDecoded ${prev})`);
}

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
