// Clients and a server behind real NATs (network namespaces, nftables; see nat.mjs), end to end
// with headless Chromium publishing over WHIP and playing over WHEP.
//
// For each client NAT type (endpoint-independent and symmetric) one Chromium runs inside the
// lan namespace with two pages, the publisher and the viewer, so that both directions of media
// cross the NAT with one browser start: the server learns both peers' mapped addresses from their
// checks (peer-reflexive), the viewer decodes, then the router's mappings are flushed mid-stream
// (a NAT rebinding: new ports) and the viewer must keep decoding within a few seconds with no new
// POST or PATCH. Then a server behind a 1:1 NAT announcing its public address
// (`media.announce`): a Chromium on the host publishes and plays through that address only.
//
// Needs root, `ip`, `nft` and `conntrack` (Debian: iproute2, nftables, conntrack); skips with the
// reason otherwise. Run from the repository root:  node --test tests/browser/nat.test.mjs
// Env: RINGCAST_BIN, CHROMIUM as for browser.test.mjs; NAT_DETAILS (set: print the server's
// output and the consoles even when it passes).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { NAT_TYPES, natClient, natServer, natUnavailable } from './nat.mjs';
import { watchWhep } from './in-page.mjs';
import { CHROMIUM, CHROMIUM_ARGS, launchInNetns, recordConsole, startServer, waitFor } from './ringcast.mjs';

// After the rebinding, this long is watched ...
const WATCH_S = 10;
// ... and the viewer may go at most this long without a new decoded frame: Chromium checks its
// selected pair every 2.5 s once stable, the check from the new mapping moves the server there,
// and a lost keyframe may need a PLI round. Before the fix the server kept sending to the old
// mapping until its pair timed out, 15 s.
const MAX_STALL_S = 5;
// ... and must decode at least this many frames in all (the fake camera sends up to 30 frames/s;
// on a loaded machine Chromium's encoder may drop to a few).
const MIN_FRAMES = 30;

for (const type of Object.keys(NAT_TYPES)) {
  test(`nat (${type}): a publisher and a viewer behind the NAT play, and go on playing when it rebinds`, { timeout: 90_000 }, async (t) => {
    const why = natUnavailable();
    if (why) {
      process.stderr.write(`nat browser test skipped: ${why}\n`);
      t.skip(why);
      return;
    }
    const nat = natClient({ tag: type === 'symmetric' ? 'sy' : 'ei', type });
    const run = { server: null, browsers: [], logs: [], passed: false };
    try {
      run.server = await startServer({ host: nat.hostAddr, env: { RINGCAST_MEDIA_PIN_THREADS: 'false' } });
      const browser = await launchInNetns(nat.lan, chromiumArgs(run.server.base));
      run.browsers.push(browser);
      const { pub, view, requests } = await play(browser, run, `nat-${type}`);

      // The server saw each peer from the NAT's public address and a port the router mapped:
      // Chromium learns that address from the server's answers to its checks (XOR-MAPPED-ADDRESS)
      // and makes it the local (peer-reflexive) end of its selected pair.
      const before = { pub: await pub.evaluate(selectedPair), view: await view.evaluate(selectedPair) };
      const mapped = nat.mappings().map((m) => m.mapped);
      for (const [name, pair] of Object.entries(before)) {
        t.diagnostic(`${type}: ${name} before the rebinding: ${JSON.stringify(pair)}`);
        assert.equal(pair.localType, 'prflx', `${name}: the server should see it from a mapped address: ${JSON.stringify(pair)}`);
        assert.equal(pair.local.split(':')[0], nat.publicAddr, `${name}: seen from ${pair.local}, not from the NAT's ${nat.publicAddr}`);
        assert.ok(mapped.includes(pair.local), `${name}: ${pair.local} is none of the router's mappings ${JSON.stringify(nat.mappings())}`);
      }
      const movesBefore = await iceMoves(run.server.base);

      // The rebinding, mid-stream.
      const postsBefore = requests.length;
      nat.rebind();
      const rebound = Date.now();
      const frames = [];
      while (Date.now() - rebound < WATCH_S * 1000) {
        frames.push({ at: Date.now() - rebound, n: await view.evaluate(framesDecoded) });
        await sleep(250);
      }
      const stall = longestStall(frames);
      const decoded = frames.at(-1).n - frames[0].n;
      const after = { pub: await pub.evaluate(selectedPair), view: await view.evaluate(selectedPair) };
      const moves = (await iceMoves(run.server.base)) - movesBefore;
      for (const [name, pair] of Object.entries(after)) t.diagnostic(`${type}: ${name} after the rebinding: ${JSON.stringify(pair)}`);
      t.diagnostic(`${type}: longest stall ${stall} ms, ${decoded} frames in ${WATCH_S} s, server followed ${moves} peer(s) to a new address`);
      t.diagnostic(`${type}: frames decoded each second after the rebinding: ${perSecond(frames).join(' ')}`);

      assert.ok(stall <= MAX_STALL_S * 1000, `the viewer decoded nothing for ${stall} ms after the rebinding (at most ${MAX_STALL_S} s)`);
      assert.ok(decoded >= MIN_FRAMES, `the viewer decoded ${decoded} frames in the ${WATCH_S} s after the rebinding (at least ${MIN_FRAMES})`);
      assert.deepEqual(requests.slice(postsBefore), [], 'no new POST or PATCH after the rebinding');
      for (const page of [pub, view]) {
        assert.equal(await page.evaluate(() => window.peer.pc.connectionState), 'connected');
      }
      if (type === 'symmetric') {
        // Random ports: both peers now come from new mappings, which the server followed.
        for (const name of ['pub', 'view']) {
          assert.notEqual(after[name].local, before[name].local, `${name}: the rebinding should have given it a new port`);
        }
        assert.equal(moves, 2, 'the server should have followed both peers to their new mappings');
      }
      run.passed = true;
    } finally {
      await finish(run, `nat (${type})`);
      nat.destroy();
    }
  });
}

test('nat (server behind 1:1 NAT): clients reach it only through its announced public address', { timeout: 60_000 }, async (t) => {
  const why = natUnavailable();
  if (why) {
    process.stderr.write(`nat browser test skipped: ${why}\n`);
    t.skip(why);
    return;
  }
  const nat = natServer({ tag: 'sv' });
  const run = { server: null, browsers: [], logs: [], passed: false };
  try {
    run.server = await startServer({
      host: nat.privateAddr,
      netns: nat.server,
      reach: nat.publicAddr,
      env: { RINGCAST_MEDIA_ANNOUNCE: nat.publicAddr, RINGCAST_MEDIA_PIN_THREADS: 'false' },
    });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: chromiumArgs(run.server.base) });
    run.browsers.push(browser);
    const { pub, view } = await play(browser, run, 'nat-server');
    for (const [name, page] of [['publisher', pub], ['viewer', view]]) {
      const answer = await page.evaluate(() => window.peer.answer);
      const candidates = answer.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:'));
      t.diagnostic(`server behind NAT: ${name}'s answer: ${candidates.join(' | ')}`);
      assert.ok(candidates.length > 0 && candidates.every((c) => c.includes(` ${nat.publicAddr} `)), `${name}: the answer should offer only ${nat.publicAddr}: ${candidates.join(' | ')}`);
      const pair = await page.evaluate(selectedPair);
      t.diagnostic(`server behind NAT: ${name}'s selected pair: ${JSON.stringify(pair)}`);
      assert.equal(pair.remote.split(':')[0], nat.publicAddr, `${name}: connected to ${pair.remote}`);
    }
    run.passed = true;
  } finally {
    await finish(run, 'nat (server behind 1:1 NAT)');
    nat.destroy();
  }
});

function chromiumArgs(base) {
  return CHROMIUM_ARGS.concat([
    '--no-proxy-server',
    // Not a loopback origin: let the publisher open the camera over plain http.
    `--unsafely-treat-insecure-origin-as-secure=${base}`,
  ]);
}

// A publisher page and a viewer page in `browser`, each in its own context: the publisher
// connects, the viewer decodes. `requests` collects every POST and PATCH either page makes.
async function play(browser, run, stream) {
  const requests = [];
  const pages = [];
  for (const name of ['publisher', 'viewer']) {
    const page = await (await browser.newContext()).newPage();
    recordConsole(page, name, run.logs);
    page.on('request', (r) => {
      if (r.method() === 'POST' || r.method() === 'PATCH') requests.push(`${name}: ${r.method()} ${r.url()}`);
    });
    await page.goto(`${run.server.base}/healthz`);
    pages.push(page);
  }
  const [pub, view] = pages;
  await pub.evaluate(publish, { stream });
  await waitFor(pub, 'publisher connected', 20_000, () => window.peer.pc.connectionState === 'connected');
  await view.evaluate(watchWhep, { stream });
  await waitFor(view, 'viewer decoding', 20_000, framesDecoded, (n) => n > 30);
  return { pub, view, requests };
}

async function finish(run, name) {
  for (const b of run.browsers) await b.close().catch(() => {});
  if (run.server) await run.server.stop();
  if (!run.passed || process.env.NAT_DETAILS) {
    process.stderr.write([
      `----- ${name}: ${run.passed ? 'details' : 'failure details'} -----`,
      'console:',
      ...run.logs.map((l) => '  ' + l),
      '----- ringcast server output -----',
      run.server ? run.server.log.join('') : '(server not started)',
      '----- end of server output -----',
      '',
    ].join('\n'));
  }
}

// The server's count of peers it followed to a new address, over all shards.
async function iceMoves(base) {
  const stats = await (await fetch(`${base}/api/stats`)).json();
  return (stats.shards || []).reduce((sum, s) => sum + (s.ice_moves || 0), 0);
}

// The longest time in ms, over `frames` ({ at, n } readings), between two readings where the
// count grew, counting from the first reading and to the last.
function longestStall(frames) {
  let longest = 0;
  let since = frames[0].at;
  for (let i = 1; i < frames.length; i++) {
    if (frames[i].n > frames[i - 1].n) {
      longest = Math.max(longest, frames[i].at - since);
      since = frames[i].at;
    }
  }
  return Math.max(longest, frames.at(-1).at - since);
}

// Frames decoded in each whole second of `frames` ({ at, n } readings).
function perSecond(frames) {
  const out = [];
  for (let s = 1; s * 1000 <= frames.at(-1).at; s++) {
    // The first reading stands for any instant before it (it need not be at 0 ms).
    const at = (ms) => (frames.findLast((f) => f.at <= ms) ?? frames[0]).n;
    out.push(at(s * 1000) - at((s - 1) * 1000));
  }
  return out;
}

// In the publisher's page: the fake camera, VP8 first, WHIP POST. Leaves `window.peer`.
async function publish({ stream }) {
  const media = await navigator.mediaDevices.getUserMedia({ video: true });
  const pc = new RTCPeerConnection();
  const tr = pc.addTransceiver(media.getVideoTracks()[0], { direction: 'sendonly', streams: [media] });
  const codecs = RTCRtpSender.getCapabilities('video').codecs;
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  tr.setCodecPreferences(vp8.concat(codecs.filter((c) => !vp8.includes(c))));
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch(`/whip/${stream}`, {
    method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
  });
  const answer = await res.text();
  if (res.status !== 201) throw new Error(`WHIP POST: ${res.status} ${answer}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.peer = { pc, answer };
}

async function framesDecoded() {
  const r = await window.peer.pc.getStats();
  let n = 0;
  r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = Math.max(n, s.framesDecoded || 0); });
  return n;
}

// The selected candidate pair of the page's peer connection: each end's address and type.
async function selectedPair() {
  const r = await window.peer.pc.getStats();
  let out = null;
  r.forEach((s) => {
    if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
    const pair = r.get(s.selectedCandidatePairId);
    const local = r.get(pair.localCandidateId);
    const remote = r.get(pair.remoteCandidateId);
    out = {
      local: `${local.address}:${local.port}`, localType: local.candidateType,
      remote: `${remote.address}:${remote.port}`, remoteType: remote.candidateType,
    };
  });
  return out;
}
