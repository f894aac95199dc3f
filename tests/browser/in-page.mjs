// Functions that run inside a test's pages (passed to `page.evaluate`, so each one is whole:
// no imports, no closures over this module).

/**
 * A WHEP viewer: a recvonly video transceiver, `POST /whep/{stream}`, the track into a playing
 * muted <video> (Chromium counts freezes at the renderer). Leaves
 * `window.peer = { pc, answer, link }` (`link`: the 201's `Link` header).
 */
export async function watchWhep({ stream }) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  const video = document.createElement('video');
  Object.assign(video, { muted: true, autoplay: true, playsInline: true, width: 320 });
  document.body.appendChild(video);
  pc.addEventListener('track', (ev) => {
    video.srcObject = new MediaStream([ev.track]);
    video.play().catch(() => {});
  });
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch(`/whep/${stream}`, {
    method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
  });
  const answer = await res.text();
  if (res.status !== 201) throw new Error(`WHEP POST: ${res.status} ${answer}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.peer = { pc, answer, link: res.headers.get('Link') };
}
