// What the browser tests share: where the ringcast binary and Chromium are, Chromium's flags,
// starting and stopping a real ringcast server, and reading the demo pages' state.

import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET_DIR = process.env.CARGO_TARGET_DIR || 'target';
export const BIN = path.resolve(ROOT, process.env.RINGCAST_BIN || path.join(TARGET_DIR, 'debug', 'ringcast'));
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
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

/** A TCP port that was free on `host` a moment ago. */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts the ringcast binary with HTTP on `host` (a free port) and its media sockets bound to
 * `host` (a random port base, 2 shards), plus the `RINGCAST_*` variables of `env`, and waits for
 * `GET /healthz`. With `netns` it runs inside that network namespace (`ip netns exec`), on a
 * random HTTP port, and is reached at `reach` (e.g. the public address of a NAT in front of it).
 * IPv6 addresses are given bare (`::`, `fd00:213::1`).
 * Returns `{ proc, base, log: string[], exited, stop() }`.
 */
export async function startServer({ host = '127.0.0.1', env = {}, netns = null, reach = host } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(`ringcast binary not found at ${BIN}: run \`cargo build -p ringcast\` or set RINGCAST_BIN`);
  }
  // The media ports are a guess (the server binds base..base+shards); try a few.
  let lastError = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    // A port free here says nothing about another namespace: there, a guess too.
    const httpPort = netns ? 20000 + Math.floor(Math.random() * 20000) : await freePort(host);
    const mediaBase = 40000 + Math.floor(Math.random() * 20000);
    const log = [];
    const [cmd, args] = netns ? ['ip', ['netns', 'exec', netns, BIN]] : [BIN, []];
    const proc = spawn(cmd, args, {
      cwd: ROOT,
      env: {
        // The server reads every RINGCAST_* variable as a config key: pass none of ours.
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RINGCAST_'))),
        RINGCAST_HTTP_LISTEN: hostPort(host, httpPort),
        RINGCAST_MEDIA_PORT_BASE: String(mediaBase),
        RINGCAST_MEDIA_SHARDS: '2',
        RINGCAST_MEDIA_BIND: host,
        // scripts/test runs the suite once per I/O engine.
        RINGCAST_MEDIA_ENGINE: process.env.TEST_ENGINE || 'auto',
        NO_COLOR: '1',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const s = { proc, base: `http://${hostPort(reach, httpPort)}`, log, exited: null };
    s.stop = () => stop(s);
    proc.stdout.on('data', (d) => log.push(d.toString()));
    proc.stderr.on('data', (d) => log.push(d.toString()));
    // A test that dies without stopping the server (an uncaught error, Ctrl-C) takes it along.
    const orphaned = () => proc.kill('SIGKILL');
    process.on('exit', orphaned);
    proc.on('exit', (code, signal) => { s.exited = { code, signal }; process.off('exit', orphaned); });
    proc.on('error', (e) => { s.exited = { error: e.message }; });

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
    await stop(s);
    if (!s.exited || !/bind|address|in use/i.test(log.join(''))) break; // only retry port clashes
  }
  throw lastError;
}

/** The page's `window.ringcast` (publish.html, watch.html), without the (unserialisable) RTCPeerConnection. */
export async function ringcastOf(page) {
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

/** Waits until watch.html's framesDecoded is over 30 and still growing between two readings a second apart. */
export async function waitForPlayback(page, timeoutMs) {
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

/**
 * Waits until `fn`, run in `page`, gives a value `ok` accepts (truthy by default), reading every
 * 250 ms; throws naming `what` after `timeoutMs`.
 */
export async function waitFor(page, what, timeoutMs, fn, ok = (v) => v) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (ok(await page.evaluate(fn))) return;
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

/** The selected candidate pair of the page's `window.ringcast.pc`: candidate types and addresses, or null. */
export function selectedPair(page) {
  return page.evaluate(async () => {
    const pc = window.ringcast && window.ringcast.pc;
    if (!pc) return null;
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return {
      local: local.candidateType,
      localAddress: `${local.address}:${local.port}`,
      relayProtocol: local.relayProtocol,
      remote: remote.candidateType,
      remoteAddress: `${remote.address}:${remote.port}`,
      remoteIp: remote.address,
      protocol: remote.protocol,
      bytesReceived: pair.bytesReceived,
    };
  });
}

/**
 * Launches headless Chromium inside network namespace `netns` (chromium-in-netns.sh) with
 * `args` (CHROMIUM_ARGS and what a test adds).
 */
export function launchInNetns(netns, args) {
  return chromium.launch({
    executablePath: path.join(ROOT, 'tests', 'browser', 'chromium-in-netns.sh'),
    args,
    env: { ...process.env, NETNS: netns, CHROMIUM },
  });
}

/**
 * Launches Chromium inside `netns` for pages of `server`, which is not a loopback origin there:
 * the publisher may open the camera over plain http.
 */
export function launchInNetnsFor(netns, server) {
  return launchInNetns(netns, CHROMIUM_ARGS.concat([
    '--no-proxy-server',
    `--unsafely-treat-insecure-origin-as-secure=${server.base}`,
  ]));
}

/**
 * Opens a publisher page (VP8, started at once) and a viewer page of `stream` on `server` in
 * one context of `browser`, their consoles recorded into `logs`. Returns the pages, before the
 * viewer plays.
 */
export async function openPublishAndWatch(browser, server, stream, logs) {
  const context = await browser.newContext();
  const pub = await context.newPage();
  const view = await context.newPage();
  recordConsole(pub, 'publish', logs);
  recordConsole(view, 'watch', logs);
  await pub.goto(`${server.base}/publish/${stream}?codec=vp8&autostart=1`);
  await view.goto(`${server.base}/watch/${stream}`);
  return { pub, view };
}

/** Records a page's console, errors, failed requests and HTTP errors into `logs`. */
export function recordConsole(page, name, logs) {
  page.on('console', (m) => logs.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[${name}] pageerror: ${e.message}`));
  page.on('requestfailed', (r) => logs.push(`[${name}] requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) logs.push(`[${name}] HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
}

// `host:port`, with an IPv6 host in brackets.
function hostPort(host, port) {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

async function stop(s) {
  if (!s || s.exited) return;
  const gone = new Promise((resolve) => s.proc.once('exit', resolve));
  s.proc.kill('SIGTERM');
  const t = setTimeout(() => s.proc.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(t);
}
