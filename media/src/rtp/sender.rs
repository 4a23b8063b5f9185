//! Send-side stamping of one outgoing stream: SSRC, sequence numbers and timestamps, and the
//! marker bit on the first packet of each talkspurt (RFC 3550 §5.1, RFC 3551 §4.1).
//!
//! Two ways in: [`Sender::stamp`] for audio Tandem generates (prompts), which advances the
//! timestamp by the samples sent; and [`Sender::forward`] for audio Tandem relays, which keeps
//! the incoming stream's gaps and timing but moves it onto this sender's SSRC, sequence and
//! timestamp space, re-basing whenever the incoming SSRC changes so the outgoing stream stays
//! continuous (the peer never sees the other leg's SSRC or numbering).

use super::packet::Header;
use super::{PayloadType, RtpTimestamp, SeqNo, Ssrc};

/// Stamps the packets of one outgoing stream.
#[derive(Debug, Clone)]
pub struct Sender {
    ssrc: Ssrc,
    next_sequence: SeqNo,
    next_timestamp: RtpTimestamp,
    talkspurt_start: bool,
    /// For [`Sender::forward`]: the incoming SSRC and the offsets onto our numbering.
    mapping: Option<Mapping>,
    packets_sent: u64,
    octets_sent: u64,
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    incoming: Ssrc,
    sequence_offset: u16,
    timestamp_offset: u32,
}

impl Sender {
    /// A sender with the given SSRC, first sequence number and first timestamp.
    pub fn new(ssrc: Ssrc, first_sequence: SeqNo, first_timestamp: RtpTimestamp) -> Self {
        Self {
            ssrc,
            next_sequence: first_sequence,
            next_timestamp: first_timestamp,
            talkspurt_start: true,
            mapping: None,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// A sender with random SSRC, sequence number and timestamp (RFC 3550 §5.1, §8.1).
    pub fn random() -> Self {
        Self::new(Ssrc::random(), SeqNo::random(), RtpTimestamp::random())
    }

    /// The SSRC this sender stamps.
    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    /// Packets stamped so far (RTCP SR "sender's packet count").
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Payload octets stamped so far (RTCP SR "sender's octet count").
    pub fn octets_sent(&self) -> u64 {
        self.octets_sent
    }

    /// The timestamp the next generated packet will carry.
    pub fn next_timestamp(&self) -> RtpTimestamp {
        self.next_timestamp
    }

    /// Marks the next packet as the start of a talkspurt (after silence or a pause), and
    /// skips the timestamp ahead by `silent_samples` so the gap keeps its length. A stream
    /// being forwarded re-bases onto this numbering at its next packet: the packets generated
    /// meanwhile (telephone-events) took sequence numbers the old offsets would reuse.
    pub fn start_talkspurt(&mut self, silent_samples: u32) {
        self.talkspurt_start = true;
        self.mapping = None;
        self.next_timestamp = self.next_timestamp.wrapping_add(silent_samples);
    }

    /// The header for the next generated packet of `samples` samples and `payload_len`
    /// octets, advancing sequence number and timestamp.
    pub fn stamp(&mut self, payload_type: PayloadType, samples: u32, payload_len: usize) -> Header {
        let header = Header {
            payload_type,
            // RFC 3551 §4.1: "the first packet of a talkspurt ... the marker bit is set".
            marker: std::mem::take(&mut self.talkspurt_start),
            sequence: self.next_sequence,
            timestamp: self.next_timestamp,
            ssrc: self.ssrc,
        };
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.next_timestamp = self.next_timestamp.wrapping_add(samples);
        self.count(payload_len);
        header
    }

    /// The outgoing header for a relayed packet: the same payload type as given, the incoming
    /// sequence number and timestamp shifted onto this sender's numbering. `samples` is the
    /// packet's duration, used to continue the numbering after a re-base. When the incoming
    /// SSRC changes the offsets are re-based and the marker set, because the new source's
    /// numbering has nothing to do with the old one's.
    pub fn forward(
        &mut self,
        incoming: &Header,
        payload_type: PayloadType,
        samples: u32,
        payload_len: usize,
    ) -> Header {
        let mapping = match self.mapping {
            Some(mapping) if mapping.incoming == incoming.ssrc => mapping,
            _ => {
                let mapping = Mapping {
                    incoming: incoming.ssrc,
                    sequence_offset: self.next_sequence.0.wrapping_sub(incoming.sequence.0),
                    timestamp_offset: self.next_timestamp.0.wrapping_sub(incoming.timestamp.0),
                };
                self.mapping = Some(mapping);
                self.talkspurt_start = true;
                mapping
            }
        };
        let sequence = SeqNo(incoming.sequence.0.wrapping_add(mapping.sequence_offset));
        let timestamp = RtpTimestamp(incoming.timestamp.0.wrapping_add(mapping.timestamp_offset));
        // Keep "next" just past the newest packet so a re-base continues from there; a late
        // packet (behind the newest) must not move it backwards.
        if (sequence.0.wrapping_sub(self.next_sequence.0) as i16) >= 0 {
            self.next_sequence = sequence.wrapping_add(1);
            self.next_timestamp = timestamp.wrapping_add(samples);
        }
        let marker = std::mem::take(&mut self.talkspurt_start) || incoming.marker;
        self.count(payload_len);
        Header {
            payload_type,
            marker,
            sequence,
            timestamp,
            ssrc: self.ssrc,
        }
    }

    fn count(&mut self, payload_len: usize) {
        self.packets_sent += 1;
        self.octets_sent += payload_len as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_advances_sequence_and_timestamp_and_marks_talkspurt_starts() {
        let mut sender = Sender::new(Ssrc(7), SeqNo(65_535), RtpTimestamp(u32::MAX - 100));
        let first = sender.stamp(PayloadType::PCMU, 160, 160);
        let second = sender.stamp(PayloadType::PCMU, 160, 160);
        assert!(first.marker);
        assert!(!second.marker);
        assert_eq!(first.sequence, SeqNo(65_535));
        assert_eq!(second.sequence, SeqNo(0));
        assert_eq!(second.timestamp, RtpTimestamp(59));
        sender.start_talkspurt(320);
        let third = sender.stamp(PayloadType::PCMU, 160, 160);
        assert!(third.marker);
        assert_eq!(third.timestamp, RtpTimestamp(59 + 160 + 320));
        assert_eq!(sender.packets_sent(), 3);
        assert_eq!(sender.octets_sent(), 480);
    }

    #[test]
    fn forwarding_keeps_gaps_and_rebases_on_a_new_incoming_ssrc() {
        let mut sender = Sender::new(Ssrc(9), SeqNo(1_000), RtpTimestamp(50_000));
        let incoming = |ssrc, sequence, timestamp| Header {
            payload_type: PayloadType::PCMA,
            marker: false,
            sequence: SeqNo(sequence),
            timestamp: RtpTimestamp(timestamp),
            ssrc: Ssrc(ssrc),
        };
        let first = sender.forward(&incoming(1, 300, 9_000), PayloadType::PCMU, 160, 160);
        assert_eq!(
            (first.sequence, first.timestamp),
            (SeqNo(1_000), RtpTimestamp(50_000))
        );
        assert!(first.marker);
        assert_eq!(first.ssrc, Ssrc(9));
        // A lost packet (301) leaves the same gap on the way out.
        let third = sender.forward(&incoming(1, 302, 9_320), PayloadType::PCMU, 160, 160);
        assert_eq!(
            (third.sequence, third.timestamp),
            (SeqNo(1_002), RtpTimestamp(50_320))
        );
        assert!(!third.marker);
        // The late packet keeps its place.
        let late = sender.forward(&incoming(1, 301, 9_160), PayloadType::PCMU, 160, 160);
        assert_eq!(late.sequence, SeqNo(1_001));
        // A new incoming source continues right after the newest packet.
        let other = sender.forward(&incoming(2, 7, 123), PayloadType::PCMU, 160, 160);
        assert_eq!(
            (other.sequence, other.timestamp),
            (SeqNo(1_003), RtpTimestamp(50_480))
        );
        assert!(other.marker);
    }
}
