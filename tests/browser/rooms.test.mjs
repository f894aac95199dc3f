// Group calls (issue 11): three headless Chromium tabs join /room/<room> (room.html: one
// RTCPeerConnection each, camera and microphone out, 5 video and 3 audio recvonly slots, the
// `ringcast` data channel) through a real ringcast server. Each must decode the other two's video
// and receive their audio on slots labelled with their names, and never its own media; a chat
// message reaches the others with the sender's name; one leaves with the page's button and the
// others get `leave` and lose it from their slots; a fourth joins late and must show a remote
// picture within a second of its POST. What each tab measured is printed either way.
//
// Run from the repository root:  node --test tests/browser/rooms.test.mjs
// Env: RINGCAST_BIN, CHROMIUM as for browser.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, recordConsole, startServer } from './ringcast.mjs';

const ROOM = 'rooms-test';
// The issue's bound: from the late joiner's POST to its first decoded frame of a remote slot.
const JOIN_TO_FRAME_MS = 1000;
// Frames decoded on a slot before it counts as playing (and still growing a second later).
const MIN_FRAMES = 10;
// A small, slow fake camera: four tabs encode and decode on a 2-core machine.
const CAMERA_FPS = 15;

test('rooms: three tabs see and hear each other, chat, one leaves, a fourth joins late and sees a picture within 1 s', { timeout: 240_000 }, async (t) => {
  const logs = [];
  const tabs = [];
  let server = null;
  let browser = null;
  let step = 'start the server';
  try {
    server = await startServer();
    const args = CHROMIUM_ARGS.map((a) => (a === '--use-fake-device-for-media-stream' ? `${a}=fps=${CAMERA_FPS}` : a));
    browser = await chromium.launch({ executablePath: CHROMIUM, args });
    const join = async (name) => {
      const context = await browser.newContext();
      const page = await context.newPage();
      recordConsole(page, name, logs);
      const tab = { name, context, page, id: null };
      tabs.push(tab);
      await page.goto(`${server.base}/room/${ROOM}?name=${name}&autostart=1`);
      await until(`${name} gets its welcome`, 20_000, async () => {
        const s = await snapshot(page);
        return s.state === 'joined' || `state ${s.state}${s.error ? `, error: ${s.error}` : ''}`;
      });
      tab.id = (await snapshot(page)).participant;
      assert.ok(tab.id != null, `${name}: the welcome names no participant`);
      return tab;
    };

    step = 'three tabs join';
    const [alice, bob, carol] = [await join('alice'), await join('bob'), await join('carol')];
    assert.equal(new Set([alice.id, bob.id, carol.id]).size, 3, 'three different participant ids');

    step = 'each decodes and hears the other two';
    for (const tab of [alice, bob, carol]) await seesAndHears(tab, [alice, bob, carol].filter((o) => o !== tab));

    step = 'chat';
    const text = 'hello from alice';
    await alice.page.fill('#chat-text', text);
    await alice.page.click('#chat-send');
    for (const tab of [bob, carol]) {
      await until(`${tab.name} gets alice's message`, 5000, async () => {
        const m = (await snapshot(tab.page)).messages.find((x) => x.text === text);
        if (!m) return 'not yet';
        assert.equal(m.from, alice.id, `${tab.name}: the message's sender`);
        assert.equal(m.name, 'alice', `${tab.name}: the sender's name`);
        return true;
      });
      assert.match(await tab.page.textContent('#chat'), /alice:\s*hello from alice/, `${tab.name}: the chat shows it`);
    }
    const echoed = (await snapshot(alice.page)).messages.filter((x) => x.text === text && !x.mine);
    assert.deepEqual(echoed, [], 'the sender does not get its own message back');

    step = 'carol leaves';
    await carol.page.click('#leave');
    await until('carol has left', 5000, async () => (await snapshot(carol.page)).state === 'left' || 'not yet');
    for (const tab of [alice, bob]) {
      await until(`${tab.name} gets carol's leave and no slot shows her`, 10_000, async () => {
        const s = await snapshot(tab.page);
        if (!s.log.some((m) => m.type === 'leave' && m.participant === carol.id)) return 'no leave message yet';
        const still = s.slots.filter((x) => x.participant === carol.id).map((x) => x.mid);
        return still.length === 0 || `slots ${still.join(', ')} still show carol`;
      });
    }
    await until('the room lists alice and bob only', 5000, async () => {
      const res = await fetch(`${server.base}/api/rooms/${ROOM}`);
      if (res.status !== 200) return `GET /api/rooms/${ROOM}: ${res.status}`;
      const ids = (await res.json()).participants.map((p) => p.id).sort();
      const want = [alice.id, bob.id].sort();
      return JSON.stringify(ids) === JSON.stringify(want) || `participants ${JSON.stringify(ids)}, want ${JSON.stringify(want)}`;
    });
    for (const [tab, other] of [[alice, bob], [bob, alice]]) await seesAndHears(tab, [other]);

    step = 'dave joins late';
    const dave = await join('dave');
    await until('dave shows a remote frame', 10_000, async () => (await snapshot(dave.page)).firstFrameAt != null || 'no frame yet');
    const d = await snapshot(dave.page);
    const joinToFrame = Math.round(d.firstFrameAt - d.joinedAt);
    t.diagnostic(`late joiner: POST to first remote frame ${joinToFrame} ms (answer after ${Math.round(d.answeredAt - d.joinedAt)} ms, data channel open after ${Math.round(d.openAt - d.joinedAt)} ms)`);
    assert.ok(joinToFrame <= JOIN_TO_FRAME_MS, `the late joiner's first remote frame came ${joinToFrame} ms after its POST (at most ${JOIN_TO_FRAME_MS} ms)`);
    await seesAndHears(dave, [alice, bob]);
    for (const tab of [alice, bob]) {
      const s = await snapshot(tab.page);
      assert.ok(s.log.some((m) => m.type === 'join' && m.participant === dave.id && m.name === 'dave'), `${tab.name} got dave's join`);
      await seesAndHears(tab, [alice, bob, dave].filter((o) => o !== tab));
    }

    for (const tab of tabs) t.diagnostic(describe(tab, await snapshot(tab.page)));
  } catch (e) {
    const lines = [`----- rooms: failed at "${step}" -----`];
    for (const tab of tabs) {
      const s = await snapshot(tab.page).catch((err) => ({ unreadable: err.message }));
      lines.push(`${tab.name} (${tab.id}): ${s.slots ? describe(tab, s) : ''}`);
      lines.push(`  window.room: ${JSON.stringify({ ...s, log: s.log && s.log.slice(-20) })}`);
    }
    lines.push('console:', ...logs.map((l) => '  ' + l));
    lines.push('----- ringcast server output -----', server ? server.log.join('') : '(not started)', '-----');
    process.stderr.write(lines.join('\n') + '\n');
    throw e;
  } finally {
    for (const tab of tabs) await tab.page.click('#leave', { timeout: 1000 }).catch(() => {});
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  }
});

// The page's `window.room`, without the RTCPeerConnection.
function snapshot(page) {
  return page.evaluate(() => {
    const { pc, ...rest } = window.room;
    return JSON.parse(JSON.stringify({ ...rest, connectionState: pc ? pc.connectionState : null }));
  });
}

// Polls `check` (true, or a string saying what is missing) until true or `ms` passed.
async function until(what, ms, check) {
  const deadline = Date.now() + ms;
  let last = '';
  for (;;) {
    const r = await check();
    if (r === true) return;
    last = r;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms / 1000} s (${last})`);
    await sleep(250);
  }
}

// `tab` decodes video and receives audio from each of `others` on slots named after them, frames
// and packets growing over a second, and no slot of its own carries its own media.
async function seesAndHears(tab, others) {
  const names = others.map((o) => o.name).join(' and ');
  await until(`${tab.name} decodes and hears ${names}`, 30_000, async () => {
    const before = await snapshot(tab.page);
    await sleep(1000);
    const now = await snapshot(tab.page);
    const problems = [];
    for (const s of now.slots) {
      if (s.participant === tab.id) problems.push(`its own media on slot ${s.mid}`);
    }
    for (const o of others) {
      if (now.names[o.id] !== o.name) problems.push(`${o.name} is called ${JSON.stringify(now.names[o.id])}`);
      for (const kind of ['video', 'audio']) {
        const slot = now.slots.find((s) => s.kind === kind && s.participant === o.id);
        if (!slot) { problems.push(`no ${kind} slot shows ${o.name}`); continue; }
        if (slot.name !== o.name) problems.push(`${kind} slot ${slot.mid} is labelled ${JSON.stringify(slot.name)}, not ${o.name}`);
        const was = before.slots.find((s) => s.mid === slot.mid) || {};
        const [key, min] = kind === 'video' ? ['framesDecoded', MIN_FRAMES] : ['packetsReceived', 1];
        if (!(slot[key] >= min && slot[key] > (was[key] || 0))) {
          problems.push(`${kind} slot ${slot.mid} (${o.name}): ${key} ${was[key] || 0} -> ${slot[key]}`);
        }
      }
    }
    return problems.length === 0 || problems.join('; ');
  });
}

function describe(tab, s) {
  const slots = s.slots.map((x) => `${x.kind} ${x.mid}: ${x.name ?? '-'} ` +
    (x.kind === 'video' ? `${x.framesDecoded} frames${x.width ? ` ${x.width}x${x.height}` : ''}` : `${x.packetsReceived} packets`));
  return `${tab.name} (${s.participant}) ${s.state}, speakers ${JSON.stringify(s.speakers)}; ${slots.join('; ')}`;
}
