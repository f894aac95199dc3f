//! A shard's counters, declared once: the struct the shard counts in, and with each counter
//! its metric help text, its kind and where `/api/stats` puts it.

use crate::peer::{CandidateType, Path, Transport};

ringcast_counters::counters! {
    /// Counters of one shard.
    ///
    /// The drop counters are written under `"drops"` in `/api/stats` (`drop_malformed` as
    /// `"drops": {"malformed": ...}`); their metric names keep the `drop_` prefix.
    pub struct ShardStats {
        /// Participants placed here.
        participants: Gauge("Participants placed on the shard"),
        /// Publishers among them.
        publishers: Gauge("Publishers on the shard"),
        /// Streams with state here.
        streams: Gauge("Streams with state on the shard"),
        /// Datagrams received (UDP, and RFC 4571 frames over TCP).
        rx_datagrams: Counter("Datagrams received (UDP, and frames over TCP)"),
        /// Datagrams transmitted (queued to the engine; UDP, and frames over TCP).
        tx_datagrams: Counter("Datagrams sent (UDP, and frames over TCP)"),
        /// RTP packets received from publishers (here or relayed).
        rtp_in: Counter("RTP packets received from publishers (local or relayed)"),
        /// RTP packets forwarded to subscribers.
        rtp_forwarded: Counter("RTP packets forwarded to subscribers"),
        /// Of those, sent at once ([`str0m::Rtc::send_rtp`]): the rest waited in str0m for
        /// the subscriber's poll (a stream's first packets, a peer with a timer due or output
        /// of its own pending).
        rtp_forwarded_at_once: Counter("RTP packets forwarded to subscribers at once, without a poll"),
        /// Relay messages sent to other shards.
        relayed: Counter("Messages relayed to other shards"),
        /// Keyframe requests sent to publishers.
        keyframe_requests: Counter("Keyframe requests sent to publishers"),
        /// Viewers moved from one simulcast layer to another (on a keyframe of the new one).
        layer_switches: Counter("Viewers moved to another simulcast layer"),
        /// Viewers started, or moved to another layer, from the keyframe cache.
        gop_replays: Counter("Viewers started or switched from the keyframe cache"),
        /// Keyframe caches emptied for outgrowing their bytes or age (until the next keyframe).
        gop_overflows: Counter("Keyframe caches emptied for outgrowing their bound"),
        /// Bytes held by the keyframe caches (payloads, shared with packets in flight, and
        /// per-packet overhead).
        gop_cache_bytes: Gauge("Bytes held by the shard's keyframe caches"),
        /// Keyframes of a layer whose resolution differs from the layer's previous one.
        layer_resolution_changes: Counter("Simulcast layers whose resolution changed mid-stream"),
        /// Rooms with members on the shard.
        rooms: Gauge("Rooms with members on the shard"),
        /// Room slots given another source (on a keyframe of the new one, for video).
        slot_switches: Counter("Room slots given another source"),
        /// Messages members sent on the room data channel.
        room_messages_in: Counter("Room data channel messages received from members"),
        /// Messages sent to members on the room data channel.
        room_messages_out: Counter("Room data channel messages sent to members"),
        /// Dropped: a member's room message that was malformed, oversized, of an unknown type or
        /// over the rate (the member is told why).
        drop_room_message: Counter("Room messages dropped: malformed, oversized, unknown or over the rate")
            in drops.room_message,
        /// Dropped: a message for a member whose data channel is not open or not read.
        drop_room_unsent: Counter("Room messages dropped: the member's channel is not open or full")
            in drops.room_unsent,
        /// Participants whose remote moved to a new address mid-session (a NAT rebinding: its
        /// nominating checks came from a new port) and were followed there.
        ice_moves: Counter("Participants followed to a new remote address (NAT rebinding)"),
        /// Sessions connected (ICE and DTLS up) to a host candidate of the client: counters of
        /// connections rather than gauges of live sessions, so that their rates give the share
        /// of clients that need STUN or TURN however long each stays, and a session that moves
        /// (a NAT rebinding) is not recounted. Each session counts once by type and once by
        /// transport; mDNS host candidates, whose address is a name, count as prflx.
        connected_host: Counter("Sessions connected to a host candidate of the client")
            in connected.host,
        /// Sessions connected to the client's NAT mapping it learned from a STUN server.
        connected_srflx: Counter("Sessions connected to a server-reflexive candidate (STUN)")
            in connected.srflx,
        /// Sessions connected to an address the client never signalled (its NAT mapping as the
        /// checks showed it, or an mDNS host candidate).
        connected_prflx: Counter("Sessions connected to a peer-reflexive (unsignalled) address")
            in connected.prflx,
        /// Sessions connected through a TURN relay.
        connected_relay: Counter("Sessions connected through a TURN relay") in connected.relay,
        /// Sessions connected over UDP.
        connected_udp: Counter("Sessions connected over UDP") in connected.udp,
        /// Sessions connected over TCP (RFC 6544).
        connected_tcp: Counter("Sessions connected over TCP") in connected.tcp,
        /// ICE over TCP (RFC 6544): connections open on the shard's TCP port. The `tcp_` counters
        /// are kept by the shard's TCP thread and filled in when the shard answers for its stats.
        tcp_connections: Gauge("TCP connections open (ICE over TCP)") in tcp.connections,
        /// TCP connections accepted.
        tcp_accepted: Counter("TCP connections accepted") in tcp.accepted,
        /// TCP connections refused: the shard's or the client IP's bound was reached.
        tcp_refused: Counter("TCP connections refused: over the shard's or the client IP's bound")
            in tcp.refused,
        /// TCP connections closed for a frame that is empty or not STUN, DTLS, RTP or RTCP, or a
        /// first frame that is not STUN.
        tcp_closed_malformed: Counter("TCP connections closed for a malformed frame")
            in tcp.closed_malformed,
        /// TCP connections closed idle (nothing received for the idle timeout; half-open ones,
        /// and those the shard never answered).
        tcp_closed_idle: Counter("TCP connections closed idle or never answered")
            in tcp.closed_idle,
        /// TCP connections closed because the client read too slowly (its write buffer outgrew
        /// its bound), rather than stall the shard.
        tcp_closed_slow: Counter("TCP connections closed for reading too slowly")
            in tcp.closed_slow,
        /// TCP frames dropped because the queue between the TCP thread and the shard was full.
        tcp_dropped_frames: Counter("TCP frames dropped: the queue to or from the shard was full")
            in tcp.dropped_frames,
        /// Dropped: not STUN and from no known address.
        drop_unknown_source: Counter("Datagrams dropped: unknown source address")
            in drops.unknown_source,
        /// Dropped: STUN naming no local ufrag here, or not taken by the peer it named.
        drop_unknown_ufrag: Counter("Datagrams dropped: STUN for no local ufrag")
            in drops.unknown_ufrag,
        /// Dropped: not parseable as STUN, DTLS, RTP or RTCP.
        drop_malformed: Counter("Datagrams dropped: malformed") in drops.malformed,
        /// Dropped: str0m returned an error for it (a DTLS record it cannot take, input in a state
        /// that does not accept it). SRTP authentication failures and truncated SRTP are dropped
        /// inside str0m without an error and are not counted here.
        drop_rejected: Counter("Datagrams dropped: refused by the peer (SRTP, DTLS)")
            in drops.rejected,
        /// Dropped: an RTP packet the peer already delivered (a replay), before decryption.
        drop_replayed: Counter("Datagrams dropped: replayed RTP, before decryption")
            in drops.replayed,
        /// Dropped: RTP on an SSRC that maps to no announced stream (a simulcast rid the offer
        /// did not announce).
        drop_unknown_layer: Counter("RTP dropped: on no announced stream or simulcast layer")
            in drops.unknown_layer,
        /// Dropped: relayed or forwarded media for which nothing here waits.
        drop_no_route: Counter("Media dropped: nothing waits for it") in drops.no_route,
    }
}

impl ShardStats {
    /// Count a session connected on `path`: once by candidate type, once by transport.
    pub fn count_connected(&mut self, path: Path) {
        *match path.candidate {
            CandidateType::Host => &mut self.connected_host,
            CandidateType::Srflx => &mut self.connected_srflx,
            CandidateType::Prflx => &mut self.connected_prflx,
            CandidateType::Relay => &mut self.connected_relay,
        } += 1;
        *match path.transport {
            Transport::Udp => &mut self.connected_udp,
            Transport::Tcp => &mut self.connected_tcp,
        } += 1;
    }
}

#[cfg(test)]
mod tests {
    use ringcast_counters::CounterSet;

    use super::ShardStats;

    #[test]
    fn drop_connected_and_tcp_counters_and_only_they_are_grouped_without_their_prefix() {
        for c in ShardStats::COUNTERS {
            let grouped = [
                ("drop_", "drops"),
                ("connected_", "connected"),
                ("tcp_", "tcp"),
            ]
            .into_iter()
            .find_map(|(prefix, group)| Some((c.name.strip_prefix(prefix)?, group)));
            match grouped {
                Some((key, group)) => {
                    assert_eq!(c.group, Some(group), "{}", c.name);
                    assert_eq!(c.key, key);
                }
                None => assert_eq!((c.group, c.key), (None, c.name)),
            }
        }
    }
}
