// What the demo pages share (served at /page.js): the Authorization header from a page's
// ?token=, and a peer connection's configuration with the server's STUN/TURN servers.
'use strict';
window.RingcastPage = {
  // Headers with `Authorization: Bearer <token>` when the page has a token, plus `extra`.
  authHeaders(token, extra) {
    const h = Object.assign({}, extra || {});
    if (token) h['Authorization'] = 'Bearer ' + token;
    return h;
  },

  // The server's ICE servers (with credentials minted for this page), fetched before the peer
  // connection exists: an empty list when the server cannot say. `relay`: relay candidates
  // only (iceTransportPolicy "relay"), to try the TURN servers.
  async rtcConfig(token, relay) {
    let iceServers = [];
    try {
      const res = await fetch('/api/ice-servers', { headers: this.authHeaders(token), cache: 'no-store' });
      if (res.ok) iceServers = (await res.json()).iceServers || [];
      else console.warn('ringcast: GET /api/ice-servers: ' + res.status);
    } catch (e) { console.warn('ringcast: GET /api/ice-servers:', e); }
    return relay ? { iceServers, iceTransportPolicy: 'relay' } : { iceServers };
  },
};
