//! Time to first frame: when a viewer holds its first complete keyframe, the first picture a
//! decoder could show. A keyframe is complete when every packet from the one that starts it
//! (same RTP timestamp) to the one with the marker bit has arrived, in any order.

/// Most packets one keyframe may span; a longer one is dropped as garbage.
const MAX_PACKETS: usize = 4096;

/// Watches one viewer's video packets for its first complete keyframe.
#[derive(Debug, Clone, Default)]
pub struct FirstFrame {
    candidate: Option<Candidate>,
    done: bool,
}

/// The keyframe being collected.
#[derive(Debug, Clone)]
struct Candidate {
    /// Its RTP timestamp.
    ts: u32,
    /// Sequence number of the packet that starts it (the earliest seen).
    start: u16,
    /// Sequence number of its last packet (marker bit), once seen.
    end: Option<u16>,
    /// Distinct sequence numbers of its packets seen so far.
    seen: Vec<u16>,
}

impl FirstFrame {
    /// Nothing seen yet.
    pub fn new() -> Self {
        FirstFrame::default()
    }

    /// Whether the first complete keyframe has arrived.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Account one video packet: `keyframe_start` when its payload starts a keyframe. True
    /// exactly once: for the packet that completes the first keyframe.
    pub fn on_packet(&mut self, seq: u16, ts: u32, marker: bool, keyframe_start: bool) -> bool {
        if self.done {
            return false;
        }
        let candidate = match &mut self.candidate {
            Some(c) if c.ts == ts => {
                if keyframe_start && before(seq, c.start) {
                    c.start = seq; // e.g. H264's STAP-A arriving after the IDR's first fragment
                }
                c
            }
            _ if keyframe_start => self.candidate.insert(Candidate {
                ts,
                start: seq,
                end: None,
                seen: Vec::with_capacity(64),
            }),
            _ => return false, // a frame we cannot decode yet
        };
        if !candidate.seen.contains(&seq) {
            if candidate.seen.len() >= MAX_PACKETS {
                self.candidate = None;
                return false;
            }
            candidate.seen.push(seq);
        }
        if marker {
            candidate.end = Some(seq);
        }
        if candidate.is_complete() {
            self.done = true;
            self.candidate = None;
            return true;
        }
        false
    }
}

impl Candidate {
    fn is_complete(&self) -> bool {
        let Some(end) = self.end else {
            return false;
        };
        if before(end, self.start) {
            return false;
        }
        let span = usize::from(end.wrapping_sub(self.start)) + 1;
        let within = self
            .seen
            .iter()
            .filter(|&&s| !before(s, self.start) && !before(end, s))
            .count();
        within == span
    }
}

/// Whether sequence number `a` comes before `b` (across the 16-bit wrap).
fn before(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed (seq, ts, marker, keyframe start) packets; the index of the one that completed.
    fn feed(packets: &[(u16, u32, bool, bool)]) -> Option<usize> {
        let mut f = FirstFrame::new();
        let mut completed = None;
        for (i, &(seq, ts, marker, key)) in packets.iter().enumerate() {
            if f.on_packet(seq, ts, marker, key) {
                assert!(completed.is_none(), "completed twice");
                completed = Some(i);
            }
        }
        assert_eq!(f.is_done(), completed.is_some());
        completed
    }

    #[test]
    fn a_keyframe_in_order_completes_on_its_marker() {
        // A delta frame first (undecodable), then a 3-packet keyframe.
        let packets = [
            (10, 100, false, false),
            (11, 100, true, false),
            (12, 200, false, true),
            (13, 200, false, false),
            (14, 200, true, false),
            (15, 300, true, false),
        ];
        assert_eq!(feed(&packets), Some(4));
        // A one-packet keyframe.
        assert_eq!(feed(&[(7, 1, true, true)]), Some(0));
    }

    #[test]
    fn a_missing_packet_delays_completion_until_it_comes() {
        // 13 lost, then retransmitted after the marker and a delta frame.
        let packets = [
            (12, 200, false, true),
            (14, 200, true, false),
            (15, 300, true, false),
            (13, 200, false, false),
        ];
        assert_eq!(feed(&packets), Some(3));
        // Duplicates do not stand in for the missing packet.
        let packets = [
            (12, 200, false, true),
            (12, 200, false, true),
            (14, 200, true, false),
            (14, 200, true, false),
        ];
        assert_eq!(feed(&packets), None);
    }

    #[test]
    fn an_incomplete_keyframe_gives_way_to_the_next() {
        let packets = [
            (1, 100, false, true),
            (3, 100, true, false), // 2 never comes
            (4, 200, true, false),
            (5, 300, false, true),
            (6, 300, true, false),
        ];
        assert_eq!(feed(&packets), Some(4));
    }

    #[test]
    fn reordering_and_the_sequence_wrap() {
        // H264: the IDR's first fragment before the STAP-A that starts the frame.
        let packets = [
            (65535, 9, false, true),
            (65534, 9, false, true),
            (1, 9, true, false),
            (0, 9, false, false),
        ];
        assert_eq!(feed(&packets), Some(3));
        // The marker first, the start last.
        let packets = [
            (7, 5, true, false),
            (5, 5, false, true),
            (6, 5, false, false),
        ];
        assert_eq!(feed(&packets), None, "packets before a start are not kept");
        let packets = [
            (5, 5, false, true),
            (7, 5, true, false),
            (6, 5, false, false),
        ];
        assert_eq!(feed(&packets), Some(2));
    }
}
