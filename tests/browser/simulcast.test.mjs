// Simulcast end to end (issue 10): headless Chromium publishes three VP8 layers of a 1280x720
// fake camera over WHIP (`sendEncodings`, rids q/h/f scaled down by 4/2/1, the smallest first as
// browsers list them); viewer A plays over WHEP from a Chromium on the host, viewer B from a
// Chromium inside a network namespace whose downlink (server -> viewer) is shaped to 400 kbit/s.
// After the layer choice has settled, a measuring window checks that both decode smoothly
// (frames/s close to their layer's, few freezes, not every frame a keyframe), that viewer B is on
// a small layer and viewer A on the top one. What each peer measured is printed either way.
//
// Needs root (namespace, veth, tc); skips with the reason otherwise.
// Run from the repository root:  node --test tests/browser/simulcast.test.mjs
// Env: RINGCAST_BIN, CHROMIUM as for browser.test.mjs; SIMULCAST_SHAPED_KBIT (400),
// SIMULCAST_SETTLE_S (10: from both playing and every layer sent to the window), SIMULCAST_WINDOW_S (20),
// SIMULCAST_DETAILS (set: print each second and the server's output even when it passes).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { netnsUnavailable, shapedNetns } from './netns.mjs';
import { watchWhep } from './in-page.mjs';
import { CHROMIUM, CHROMIUM_ARGS, launchInNetns, recordConsole, startServer, waitFor } from './ringcast.mjs';

const SHAPED_KBIT = Number(process.env.SIMULCAST_SHAPED_KBIT || 400);
const SETTLE_S = Number(process.env.SIMULCAST_SETTLE_S || 10);
const WINDOW_S = Number(process.env.SIMULCAST_WINDOW_S || 20);
const CAMERA = { width: 1280, height: 720, fps: 30 };
// As a page lists them: smallest first. The server must order layers by what they carry.
const ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 2_000_000 },
];
// Settling starts once the publisher sends every layer (waited for up to 30 s).
// Smooth: decoded frames/s at least this share of what the publisher encodes on that layer and at
// most this multiple (more is old frames replayed fast: a catch-up longer than a few seconds) ...
const MIN_FPS_SHARE = 0.8;
const MAX_FPS_SHARE = 1.25;
// ... at most this many freezes (Chromium: a frame later than max(3 x mean, mean + 150 ms)) and
// this much frozen time in the window ...
const MAX_FREEZES = 3;
// A second in which the publisher encoded fewer than this share of the camera's frames on a
// viewer's layer is the publisher's starvation, not the server's: its freezes are not counted.
const STARVED_FPS_SHARE = 0.7;
const MAX_FROZEN_S = 2;
// ... and keyframes at most this share of decoded frames (the bug: every frame a keyframe).
const MAX_KEYFRAME_SHARE = 0.1;
// Viewer B's layer on its 400 kbit/s link, every second of the window.
const MAX_SHAPED_WIDTH = 640;
// Viewer A on the top layer for at least this share of the window's seconds. One dip must pass:
// the layer choice goes down at once on a falling estimate and comes back up only 4 s after
// going down (and once the estimate held), so a single loss burst on this shared VM (a Chromium
// that misses its socket for a moment: NACKs, RTX, an estimate drop) costs 5-6 s of the 20 s
// window.
const MIN_TOP_SHARE = 0.7;
const STREAM = 'simulcast';

test('simulcast: chromium publishes 3 layers; a viewer on a 400 kbit/s link gets a small one, a viewer on the host the top one', { timeout: 240_000 }, async (t) => {
  const why = netnsUnavailable();
  if (why) {
    process.stderr.write(`simulcast browser test skipped: ${why}\n`);
    t.skip(why);
    return;
  }

  const ns = shapedNetns({ tag: 'sc', kbit: SHAPED_KBIT });
  let server = null;
  const browsers = [];
  const logs = [];
  let report = null;
  let passed = false;
  try {
    // HTTP and media on the host end of the veth: the host's browser reaches it through the
    // host's own routes, the namespace's through the veth and the shaper.
    server = await startServer({ host: ns.hostAddr, env: { RINGCAST_MEDIA_PIN_THREADS: 'false' } });
    const args = CHROMIUM_ARGS
      .map((a) => (a === '--use-fake-device-for-media-stream' ? `${a}=fps=${CAMERA.fps}` : a))
      .concat([
        '--no-proxy-server',
        // Not a loopback origin: let the publisher open the camera over plain http.
        `--unsafely-treat-insecure-origin-as-secure=${server.base}`,
      ]);
    const host = await chromium.launch({ executablePath: CHROMIUM, args });
    browsers.push(host);
    const shaped = await launchInNetns(ns.name, args);
    browsers.push(shaped);

    const pub = await (await host.newContext()).newPage();
    const viewA = await (await host.newContext()).newPage();
    const viewB = await (await shaped.newContext()).newPage();
    recordConsole(pub, 'publisher', logs);
    recordConsole(viewA, 'viewer A', logs);
    recordConsole(viewB, 'viewer B', logs);
    for (const page of [pub, viewA, viewB]) await page.goto(`${server.base}/healthz`);

    await pub.evaluate(publish, { stream: STREAM, camera: CAMERA, encodings: ENCODINGS });
    await waitFor(pub, 'publisher connected', 20_000, () => window.peer.pc.connectionState === 'connected');
    for (const view of [viewA, viewB]) await view.evaluate(watchWhep, { stream: STREAM });
    for (const [name, view] of [['viewer A', viewA], ['viewer B', viewB]]) {
      await waitFor(view, `${name} decoding`, 30_000, async () => {
        const r = await window.peer.pc.getStats();
        let frames = 0;
        r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0; });
        return frames > 30;
      });
    }
    // Chromium starts a layer only once its own estimate of its uplink allows it: on a loaded
    // machine the top one can start seconds late, and what a viewer gets before then is not the
    // server's choice. Settling counts from when every layer is sent.
    await waitFor(pub, 'the publisher sending every layer', 30_000, async () => {
      const r = await window.peer.pc.getStats();
      let sending = 0;
      r.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video' && s.framesPerSecond > 0) sending += 1; });
      return sending >= window.peer.layers;
    });
    // Every second from then: the settling seconds are only reported (how the layer choice
    // moved), the window's are checked.
    const settling = { A: [], B: [] };
    const series = { A: [], B: [] };
    // Each second in full, printed only on failure: when a freeze began, what came with it.
    const details = [];
    let prev = await sampleAll(pub, viewA, viewB);
    let first = prev;
    for (let i = 0; i < SETTLE_S + WINDOW_S; i++) {
      await sleep(1000);
      const cur = await sampleAll(pub, viewA, viewB);
      for (const k of ['A', 'B']) (i < SETTLE_S ? settling : series)[k].push(tick(prev, cur, k));
      details.push(detail(prev, cur));
      if (i === SETTLE_S - 1) first = cur;
      prev = cur;
    }
    report = measure(first, prev, series, settling);
    report.details = details;
    report.shaper = ns.describe();
    const failures = verdict(report);
    for (const line of summary(report).split('\n')) t.diagnostic(line);
    assert.deepEqual(failures, [], `simulcast checks failed:\n  ${failures.join('\n  ')}\n${summary(report)}`);
    passed = true;
  } finally {
    for (const b of browsers) await b.close().catch(() => {});
    if (server) await server.stop();
    ns.destroy();
    if (!passed || process.env.SIMULCAST_DETAILS) {
      process.stderr.write([
        passed ? '----- simulcast: details -----' : '----- simulcast: failure details -----',
        report ? '' : '(failed before the measuring window)',
        'each second (settling, then the window):',
        ...(report?.details || []).map((l) => '  ' + l),
        'console:',
        ...logs.map((l) => '  ' + l),
        '----- ringcast server output -----',
        server ? server.log.join('') : '(server not started)',
        '----- end of server output -----',
        '',
      ].join('\n'));
    }
  }
});

// In the publisher's page: camera, one video transceiver with three encodings, VP8 first,
// WHIP POST. Leaves `window.peer = { pc, answer }`.
async function publish({ stream, camera, encodings }) {
  const media = await navigator.mediaDevices.getUserMedia({
    video: { width: { exact: camera.width }, height: { exact: camera.height }, frameRate: camera.fps },
  });
  const pc = new RTCPeerConnection();
  const tr = pc.addTransceiver(media.getVideoTracks()[0], {
    direction: 'sendonly', streams: [media], sendEncodings: encodings,
  });
  const codecs = RTCRtpSender.getCapabilities('video').codecs;
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  tr.setCodecPreferences(vp8.concat(codecs.filter((c) => !vp8.includes(c))));
  // Under CPU load keep the layers' sizes (what the viewers' widths are checked against) and
  // lower the frame rate instead.
  const params = tr.sender.getParameters();
  params.degradationPreference = 'maintain-resolution';
  await tr.sender.setParameters(params);
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch(`/whip/${stream}`, {
    method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
  });
  const answer = await res.text();
  if (res.status !== 201) throw new Error(`WHIP POST: ${res.status} ${answer}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.peer = { pc, answer, layers: encodings.length };
}

// One getStats reading of the publisher (per rid) and of both viewers, with the time.
async function sampleAll(pub, viewA, viewB) {
  const [P, A, B] = await Promise.all([pub.evaluate(publisherStats), viewA.evaluate(viewerStats), viewB.evaluate(viewerStats)]);
  return { at: Date.now(), P, A, B };
}

async function publisherStats() {
  const r = await window.peer.pc.getStats();
  const layers = {};
  let availableOutgoingBitrate = null;
  r.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      layers[s.rid || '(none)'] = {
        width: s.frameWidth || 0, height: s.frameHeight || 0, fps: s.framesPerSecond || 0,
        framesEncoded: s.framesEncoded || 0, keyFramesEncoded: s.keyFramesEncoded || 0,
        bytesSent: s.bytesSent || 0, targetBitrate: s.targetBitrate || 0, active: s.active,
        limitation: s.qualityLimitationReason, pli: s.pliCount || 0, nack: s.nackCount || 0,
      };
    }
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
      availableOutgoingBitrate = s.availableOutgoingBitrate ?? availableOutgoingBitrate;
    }
  });
  return { layers, availableOutgoingBitrate };
}

async function viewerStats() {
  const r = await window.peer.pc.getStats();
  let v = null;
  let remote = null;
  let ssrcs = 0;
  r.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      ssrcs += 1;
      if (!v || (s.framesDecoded || 0) > (v.framesDecoded || 0)) v = s;
    }
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
      const c = r.get(s.remoteCandidateId);
      remote = c ? `${c.address}:${c.port}` : null;
    }
  });
  const codec = v && v.codecId && r.get(v.codecId) ? r.get(v.codecId).mimeType : '';
  // What the answer lets this viewer tell the server about its downlink.
  const sdp = window.peer.answer;
  const feedback = [
    /transport-wide-cc/.test(sdp) && 'twcc-ext',
    /a=rtcp-fb:\S+ transport-cc/.test(sdp) && 'transport-cc',
    /a=rtcp-fb:\S+ goog-remb/.test(sdp) && 'goog-remb',
    /abs-send-time/.test(sdp) && 'abs-send-time',
  ].filter(Boolean).join(',') || 'none';
  return {
    codec, remote, ssrcs, feedback,
    width: v?.frameWidth || 0, height: v?.frameHeight || 0, fps: v?.framesPerSecond || 0,
    framesDecoded: v?.framesDecoded || 0, keyFramesDecoded: v?.keyFramesDecoded || 0,
    framesReceived: v?.framesReceived || 0, retransmittedPackets: v?.retransmittedPacketsReceived || 0,
    jitterBufferDelay: v?.jitterBufferDelay || 0, jitterBufferEmitted: v?.jitterBufferEmittedCount || 0,
    framesDropped: v?.framesDropped || 0, freezeCount: v?.freezeCount || 0,
    totalFreezesDuration: v?.totalFreezesDuration || 0, packetsLost: v?.packetsLost || 0,
    packetsReceived: v?.packetsReceived || 0, bytesReceived: v?.bytesReceived || 0,
    retransmittedBytes: v?.retransmittedBytesReceived || 0,
    nackCount: v?.nackCount || 0, pliCount: v?.pliCount || 0,
  };
}

// One second of a viewer: its width and decoded frames/s.
// One second of viewer `k`: its width, decoded frames, freezes and frozen time, and whether the
// publisher starved that second: the layer the viewer is on encoded fewer than
// STARVED_FPS_SHARE of the camera's frames (a Chromium short of CPU on this shared VM). A
// server cannot forward frames that were never encoded: freezes in such a second are the
// publisher's, reported but not counted against the server.
function tick(prev, cur, k) {
  const a = prev[k];
  const b = cur[k];
  const layer = Object.entries(cur.P.layers).find(([, l]) => l.width === b.width);
  const encoded = layer ? layer[1].framesEncoded - (prev.P.layers[layer[0]]?.framesEncoded || 0) : null;
  const secs = (cur.at - prev.at) / 1000;
  return {
    width: b.width,
    fps: (b.framesDecoded - a.framesDecoded),
    freezes: b.freezeCount - a.freezeCount,
    frozenS: b.totalFreezesDuration - a.totalFreezesDuration,
    starved: encoded !== null && encoded < STARVED_FPS_SHARE * CAMERA.fps * secs,
  };
}

// One second of everything, as a line: the publisher's layers (frames, keyframes, PLIs) and each
// viewer's frames received and decoded, keyframes, PLIs, NACKs, packets (of which
// retransmitted), losses and jitter buffer delay.
function detail(a, b) {
  const d = (x, y, k) => (y[k] || 0) - (x[k] || 0);
  const pub = Object.entries(b.P.layers).map(([rid, l]) => {
    const p = a.P.layers[rid] || {};
    return `${rid}:${d(p, l, 'framesEncoded')}f/${d(p, l, 'keyFramesEncoded')}k/${d(p, l, 'pli')}pli`;
  }).join(' ');
  const view = (k) => {
    const x = a[k];
    const y = b[k];
    const emitted = d(x, y, 'jitterBufferEmitted');
    const jb = emitted > 0 ? Math.round((d(x, y, 'jitterBufferDelay') / emitted) * 1000) : '-';
    return `${k}:${y.width} rx${d(x, y, 'framesReceived')} dec${d(x, y, 'framesDecoded')} kf${d(x, y, 'keyFramesDecoded')} `
      + `pli${d(x, y, 'pliCount')} nack${d(x, y, 'nackCount')} pkt${d(x, y, 'packetsReceived')} `
      + `rtx${d(x, y, 'retransmittedPackets')} lost${d(x, y, 'packetsLost')} jb${jb}ms`;
  };
  return `${new Date(b.at).toISOString().slice(11, 23)} pub[${pub}] ${view('A')} ${view('B')}`;
}

// The window's figures: per publisher layer and per viewer.
function measure(first, last, series, settling) {
  const secs = (last.at - first.at) / 1000;
  const layers = {};
  for (const [rid, l] of Object.entries(last.P.layers)) {
    const f = first.P.layers[rid] || { framesEncoded: 0, keyFramesEncoded: 0, bytesSent: 0 };
    layers[rid] = {
      width: l.width, height: l.height,
      fps: (l.framesEncoded - f.framesEncoded) / secs,
      keyframes: l.keyFramesEncoded - f.keyFramesEncoded,
      kbps: ((l.bytesSent - f.bytesSent) * 8) / secs / 1000,
      targetKbps: l.targetBitrate / 1000, limitation: l.limitation, pli: l.pli,
    };
  }
  const viewer = (k) => {
    const a = first[k];
    const b = last[k];
    return {
      codec: b.codec, remote: b.remote, feedback: b.feedback, ssrcs: b.ssrcs, width: b.width, height: b.height,
      fps: (b.framesDecoded - a.framesDecoded) / secs,
      framesDecoded: b.framesDecoded - a.framesDecoded,
      keyFramesDecoded: b.keyFramesDecoded - a.keyFramesDecoded,
      // Freezes in the seconds the publisher did not starve (see `tick`).
      freezes: series[k].filter((s) => !s.starved).reduce((n, s) => n + s.freezes, 0),
      frozenS: series[k].filter((s) => !s.starved).reduce((n, s) => n + s.frozenS, 0),
      starvedS: series[k].filter((s) => s.starved).length,
      framesDropped: b.framesDropped - a.framesDropped,
      packetsLost: b.packetsLost - a.packetsLost,
      kbps: ((b.bytesReceived - a.bytesReceived) * 8) / secs / 1000,
      // Of which retransmissions (RTX: repairs, or the server's bandwidth probes).
      rtxKbps: ((b.retransmittedBytes - a.retransmittedBytes) * 8) / secs / 1000,
      nack: b.nackCount - a.nackCount, pli: b.pliCount - a.pliCount,
      widths: [...new Set(series[k].map((s) => s.width))],
      // Seconds without a decoded frame: a freeze still going on at the end is not counted yet.
      stalledS: series[k].filter((s) => s.fps === 0).length,
      seconds: series[k].map((s) => s.width),
      perSecond: series[k].map((s) => `${s.width}@${s.fps}${s.starved ? '*' : ''}`).join(' '),
      settling: settling[k].map((s) => `${s.width}@${s.fps}`).join(' '),
    };
  };
  return {
    secs, layers, outKbps: (last.P.availableOutgoingBitrate || 0) / 1000,
    A: viewer('A'), B: viewer('B'), bytesB: last.B.bytesReceived,
  };
}

// Every check that failed, in words.
function verdict(r) {
  const failures = [];
  const sending = Object.entries(r.layers).filter(([, l]) => l.fps > 0);
  if (sending.length !== ENCODINGS.length) {
    failures.push(`publisher sends ${sending.length} of ${ENCODINGS.length} layers (${sending.map(([rid]) => rid).join(',')}): see its limitation/target`);
  }
  const top = Math.max(0, ...sending.map(([, l]) => l.width));
  for (const k of ['A', 'B']) {
    const v = r[k];
    const layer = sending.find(([, l]) => l.width === v.width);
    const layerFps = layer ? layer[1].fps : CAMERA.fps;
    if (!(v.fps >= MIN_FPS_SHARE * layerFps && v.fps <= MAX_FPS_SHARE * layerFps)) {
      failures.push(`viewer ${k}: ${v.fps.toFixed(1)} frames/s decoded, want ${MIN_FPS_SHARE} to ${MAX_FPS_SHARE} x ${layerFps.toFixed(1)} (its layer's)`);
    }
    if (v.ssrcs !== 1) {
      failures.push(`viewer ${k}: video on ${v.ssrcs} SSRCs, want 1 (one SSRC across layer switches)`);
    }
    if (v.freezes > MAX_FREEZES || v.frozenS > MAX_FROZEN_S || v.stalledS > MAX_FROZEN_S) {
      failures.push(`viewer ${k}: ${v.freezes} freezes, ${v.frozenS.toFixed(2)} s frozen, ${v.stalledS} s without a frame, want <= ${MAX_FREEZES} and <= ${MAX_FROZEN_S} s`);
    }
    if (!(v.framesDecoded > 0 && v.keyFramesDecoded <= MAX_KEYFRAME_SHARE * v.framesDecoded)) {
      failures.push(`viewer ${k}: ${v.keyFramesDecoded} keyframes of ${v.framesDecoded} frames decoded, want <= ${MAX_KEYFRAME_SHARE * 100} %`);
    }
  }
  const widestB = Math.max(0, ...r.B.seconds);
  if (!(r.B.width > 0 && widestB <= MAX_SHAPED_WIDTH)) {
    failures.push(`viewer B (${SHAPED_KBIT} kbit/s): ${r.B.width} wide at the end, ${widestB} at most, want a small layer (<= ${MAX_SHAPED_WIDTH}) throughout`);
  }
  // Viewer B's media all crossed the shaper (payload bytes; the shaper also counts headers).
  const shaped = Number((/Sent (\d+) bytes/.exec(r.shaper || '') || [])[1] || 0);
  if (!(shaped >= r.bytesB)) {
    failures.push(`viewer B received ${r.bytesB} bytes but the shaper passed only ${shaped}: not behind the shaped link`);
  }
  const onTop = r.A.seconds.filter((w) => w === top).length;
  if (!(top > 0 && r.A.width === top && onTop >= MIN_TOP_SHARE * r.A.seconds.length)) {
    failures.push(`viewer A (host): ${r.A.width} wide at the end, on the top layer (${top}) ${onTop} of ${r.A.seconds.length} s, want there at the end and >= ${MIN_TOP_SHARE * 100} % of the time`);
  }
  return failures;
}

function summary(r) {
  const f = (x) => (typeof x === 'number' ? Number(x.toFixed(1)) : x);
  const line = (o) => Object.entries(o).map(([k, v]) => `${k}=${f(v)}`).join(' ');
  const lines = [`simulcast: measured over ${f(r.secs)} s`];
  lines.push(`  publisher: availableOutgoingBitrate=${f(r.outKbps)} kbit/s`);
  for (const [rid, l] of Object.entries(r.layers)) lines.push(`  publisher layer ${rid}: ${line(l)}`);
  for (const k of ['A', 'B']) {
    const { perSecond, settling, widths, seconds, ...rest } = r[k];
    lines.push(`  viewer ${k}${k === 'B' ? ` (${SHAPED_KBIT} kbit/s)` : ' (host)'}: ${line(rest)} widths=${widths.join(',')}`);
    lines.push(`    settling, per second (width@frames): ${settling}`);
    lines.push(`    window, per second (width@frames, * publisher starved): ${perSecond}`);
  }
  if (r.shaper) lines.push(`  shaper: ${r.shaper.replace(/\n\s*/g, ' | ')}`);
  return lines.join('\n');
}
