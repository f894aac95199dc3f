use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::io::DATAGRAM_MAX_PACKET_SIZE;
use crate::packet::Vp8Patch;
use crate::rtp_::{ExtensionValues, MediaTime, Pt, RtpHeader, SeqNo, Ssrc, VideoOrientation};

use super::RtpPacket;
use super::rtx_cache_buf::EvictingBuffer;

const RTX_CACHE_SIZE_QUANTIZER: usize = 25;
const RTX_CACHE_QUANTIZE_SLOTS: usize = DATAGRAM_MAX_PACKET_SIZE / RTX_CACHE_SIZE_QUANTIZER;

/// A sent packet as the cache keeps it: what a resend (or a spurious padding resend) writes.
///
/// ringcast patch: str0m 0.25.0 kept the whole [`RtpPacket`] here, 408 bytes per sent packet
/// whatever its size (the parsed header with every extension value, the send queue's
/// timestamp, the sender info), for every packet of the last second on every stream. This
/// keeps ~80 bytes: the header fields a media packet has (anything else keeps the whole header,
/// boxed) and the shared payload. A resend rebuilds the [`RtpPacket`] from it
/// ([`CachedPacket::write_into`]); what it sends is what the full packet sent, except the MID
/// extension on a resend after the peer acknowledged the RTX SSRC (str0m's own rule is to stop
/// sending the MID there; it only kept it when the cached header still had it).
#[derive(Debug)]
pub(crate) struct CachedPacket {
    pub seq_no: SeqNo,
    pub time: MediaTime,
    pub payload: Arc<[u8]>,
    vp8_patch: Option<Vp8Patch>,
    header: CachedHeader,
}

#[derive(Debug)]
enum CachedHeader {
    /// No CSRC, no padding, and no extension values but the ones below (and MID/RID, which
    /// the send path sets again on every resend).
    Media {
        payload_type: Pt,
        marker: bool,
        has_extension: bool,
        timestamp: u32,
        ssrc: Ssrc,
        audio_level: Option<i8>,
        voice_activity: Option<bool>,
        video_orientation: Option<VideoOrientation>,
    },
    /// Anything else, as it was.
    Full(Box<RtpHeader>),
}

impl CachedPacket {
    fn new(packet: RtpPacket) -> Self {
        let RtpPacket {
            seq_no,
            time,
            header,
            payload,
            vp8_patch,
            ..
        } = packet;
        let header = if is_media_header(&header) {
            CachedHeader::Media {
                payload_type: header.payload_type,
                marker: header.marker,
                has_extension: header.has_extension,
                timestamp: header.timestamp,
                ssrc: header.ssrc,
                audio_level: header.ext_vals.audio_level,
                voice_activity: header.ext_vals.voice_activity,
                video_orientation: header.ext_vals.video_orientation,
            }
        } else {
            CachedHeader::Full(Box::new(header))
        };
        Self {
            seq_no,
            time,
            payload,
            vp8_patch,
            header,
        }
    }

    /// Make `packet` the packet this was when it was sent, to be sent again.
    pub fn write_into(&self, packet: &mut RtpPacket) {
        packet.seq_no = self.seq_no;
        packet.time = self.time;
        packet.payload = self.payload.clone();
        packet.vp8_patch = self.vp8_patch;
        packet.nackable = true;
        packet.last_sender_info = None;
        packet.header = match &self.header {
            CachedHeader::Media {
                payload_type,
                marker,
                has_extension,
                timestamp,
                ssrc,
                audio_level,
                voice_activity,
                video_orientation,
            } => RtpHeader {
                has_extension: *has_extension,
                marker: *marker,
                payload_type: *payload_type,
                sequence_number: *self.seq_no as u16,
                timestamp: *timestamp,
                ssrc: *ssrc,
                ext_vals: ExtensionValues {
                    audio_level: *audio_level,
                    voice_activity: *voice_activity,
                    video_orientation: *video_orientation,
                    ..Default::default()
                },
                ..Default::default()
            },
            CachedHeader::Full(header) => (**header).clone(),
        };
    }
}

/// Whether `header` is all [`CachedHeader::Media`] keeps (every field is named, so a new
/// extension value does not compile until it is sorted here).
fn is_media_header(header: &RtpHeader) -> bool {
    let ExtensionValues {
        audio_level: _,
        voice_activity: _,
        video_orientation: _,
        video_content_type,
        tx_time_offs,
        abs_send_time,
        abs_capture_time,
        transport_cc,
        play_delay_min,
        play_delay_max,
        video_timing,
        rid: _,
        rid_repair: _,
        mid: _,
        frame_mark,
        user_values,
    } = &header.ext_vals;
    header.version == 2
        && !header.has_padding
        && header.csrc_count == 0
        && video_content_type.is_none()
        && tx_time_offs.is_none()
        && abs_send_time.is_none()
        && abs_capture_time.is_none()
        && transport_cc.is_none()
        && play_delay_min.is_none()
        && play_delay_max.is_none()
        && video_timing.is_none()
        && frame_mark.is_none()
        && user_values.is_empty()
}

#[derive(Debug)]
pub(crate) struct RtxCache {
    // Data, new additions here probably need to be cleared in [`clear`].
    packet_by_seq_no: EvictingBuffer<CachedPacket>,

    // Technically we want [Option<SeqNo>; X] to indicate the absence of
    // a SeqNo. However We can half the storage space by using the sentinel
    // values SeqNo::MAX to indicate None
    seq_no_by_quantized_size: [SeqNo; RTX_CACHE_QUANTIZE_SLOTS],
}

impl RtxCache {
    pub fn new(max_packet_count: usize, max_packet_age: Duration) -> Self {
        Self {
            packet_by_seq_no: EvictingBuffer::new(10, max_packet_age, max_packet_count),
            seq_no_by_quantized_size: [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS],
        }
    }

    pub fn cache_sent_packet(&mut self, packet: RtpPacket, now: Instant) {
        assert!(packet.nackable);
        let seq_no = packet.seq_no;
        let quantized_size = packet.payload.len() / RTX_CACHE_SIZE_QUANTIZER;
        self.packet_by_seq_no
            .push(*seq_no, now, CachedPacket::new(packet));
        self.seq_no_by_quantized_size[quantized_size] = seq_no;
        self.remove_old_packets(now);
    }

    pub fn last_cached_seq_no(&self) -> Option<SeqNo> {
        Some(self.packet_by_seq_no.last_position()?.into())
    }

    pub fn get_cached_packet_by_seq_no(&self, seq_no: SeqNo) -> Option<&CachedPacket> {
        self.packet_by_seq_no.get(*seq_no)
    }

    pub fn get_cached_packet_smaller_than(&self, max_size: usize) -> Option<&CachedPacket> {
        let quantized_size = max_size / RTX_CACHE_SIZE_QUANTIZER;

        let seq_no = self.seq_no_by_quantized_size[..quantized_size]
            .iter()
            .rev()
            .filter(|seq_no| !seq_no.is_max())
            .find(|seq_no| self.packet_by_seq_no.contains(***seq_no))?;

        self.get_cached_packet_by_seq_no(*seq_no)
    }

    fn remove_old_packets(&mut self, now: Instant) {
        self.packet_by_seq_no.maybe_evict(now);
    }

    pub(crate) fn last_packet(&self) -> Option<&[u8]> {
        let packet = self.packet_by_seq_no.last()?;
        Some(packet.payload.as_ref())
    }

    pub(crate) fn clear(&mut self) {
        self.packet_by_seq_no.clear();
        self.seq_no_by_quantized_size = [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS];
    }
}

#[cfg(test)]
mod test {
    use crate::rtp_::MediaTime;
    use crate::rtp_::RtpHeader;

    use super::*;

    /// The sequence number and the millis a cached packet was made with (its payload).
    fn key(packet: Option<&CachedPacket>) -> Option<(u64, u64)> {
        let packet = packet?;
        let millis = u64::from_be_bytes(packet.payload.as_ref().try_into().unwrap());
        Some((*packet.seq_no, millis))
    }

    fn after(now: Instant, millis: u64) -> Instant {
        now + Duration::from_millis(millis)
    }

    fn packet(now: Instant, seq_no: u64, millis: u64) -> RtpPacket {
        RtpPacket {
            header: RtpHeader::default(),
            seq_no: seq_no.into(),
            time: MediaTime::from_90khz(0),
            payload: millis.to_be_bytes().into(),
            vp8_patch: None,
            timestamp: after(now, millis),
            last_sender_info: None,
            nackable: true,
        }
    }

    /// ringcast patch: a packet rebuilt from its cache entry is the packet that was sent, with
    /// the common media header (kept compact) and with an unusual one (kept whole).
    #[test]
    fn cached_packets_rebuild_the_sent_packet() {
        let now = Instant::now();
        let media = |seq_no| {
            let mut p = packet(now, seq_no, seq_no * 10);
            p.header.payload_type = 96.into();
            p.header.marker = true;
            p.header.timestamp = 1234;
            p.header.ssrc = 5.into();
            p.header.sequence_number = seq_no as u16;
            p.header.ext_vals.audio_level = Some(-30);
            p.header.ext_vals.video_orientation = Some(VideoOrientation::Deg90);
            p
        };
        let unusual = |seq_no| {
            let mut p = media(seq_no);
            p.header.csrc_count = 1;
            p.header.csrc[0] = 9;
            p.header.ext_vals.frame_mark = Some(3);
            p
        };
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(media(1), now);
        rtx_cache.cache_sent_packet(unusual(2), now);
        let cached = rtx_cache.get_cached_packet_by_seq_no(1.into()).unwrap();
        assert!(matches!(cached.header, CachedHeader::Media { .. }));
        let cached = rtx_cache.get_cached_packet_by_seq_no(2.into()).unwrap();
        assert!(matches!(cached.header, CachedHeader::Full(_)));

        for (seq_no, sent) in [(1, media(1)), (2, unusual(2))] {
            let mut rebuilt = RtpPacket::blank();
            let cached = rtx_cache.get_cached_packet_by_seq_no(seq_no.into());
            cached.unwrap().write_into(&mut rebuilt);
            rebuilt.timestamp = sent.timestamp; // when it was queued: not kept
            assert!(rebuilt == sent, "packet {seq_no}");
        }
    }

    #[test]
    fn rtx_cache_0_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(0, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert_eq!(Some((1, 10)), key(rtx_cache.get_cached_packet_by_seq_no(1.into())));
        assert_eq!(Some((1, 10)), key(rtx_cache.get_cached_packet_smaller_than(1000)));
    }

    #[test]
    fn rtx_cache_0_duration() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(0));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert!(rtx_cache.get_cached_packet_by_seq_no(1.into()).is_none());
        assert!(rtx_cache.get_cached_packet_smaller_than(1000).is_none());
    }

    #[test]
    fn rtx_cache_1_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(1, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert_eq!(Some((1, 10)), key(rtx_cache.get_cached_packet_by_seq_no(1.into())));
        assert_eq!(Some((1, 10)), key(rtx_cache.get_cached_packet_smaller_than(1000)));
        assert_eq!(Some((1, 10)), key(rtx_cache.get_cached_packet_smaller_than(25)));
        assert!(rtx_cache.get_cached_packet_smaller_than(24).is_none());
        rtx_cache.cache_sent_packet(packet(now, 2, 20), after(now, 20));
        assert_eq!(Some((2, 20)), key(rtx_cache.get_cached_packet_by_seq_no(2.into())));
    }

    #[test]
    fn rtx_cache_100_sized_backwards() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(100, Duration::from_secs(3));

        for i in 1..=200 {
            let seq_no = 201 - i;
            let pkt = packet(now, seq_no, (201 - i) * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, now);
        }

        assert_eq!(Some((200, 2000)), key(rtx_cache.get_cached_packet_by_seq_no(200.into())));
        assert!(rtx_cache.get_cached_packet_by_seq_no(100.into()).is_none());
        assert!(rtx_cache.get_cached_packet_by_seq_no(101.into()).is_none());
    }

    #[test]
    fn rtx_cache_eviction() {
        let now = Instant::now();
        // Cache can take all entries
        let mut rtx_cache = RtxCache::new(400, Duration::from_secs(1));
        for i in 1..=200 {
            let seq_no = i;
            let pkt = packet(now, seq_no, i * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, now);
        }

        assert!(rtx_cache.get_cached_packet_by_seq_no(99.into()).is_none());

        assert_eq!(Some((100, 1000)), key(rtx_cache.get_cached_packet_by_seq_no(100.into())));
        assert_eq!(Some((200, 2000)), key(rtx_cache.get_cached_packet_by_seq_no(200.into())));
    }
}
