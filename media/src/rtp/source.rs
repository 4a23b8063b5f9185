//! Receive-side state of one synchronisation source: extended sequence numbers across the
//! 16-bit wrap with probation and dropout/misorder bounds (RFC 3550 Appendix A.1), loss
//! accounting (§6.4.1, A.3) and interarrival jitter (§6.4.1, A.8).
//!
//! Sans-IO: the caller passes each packet's sequence number, RTP timestamp and arrival
//! `now: Instant`; nothing here reads the clock.

use std::time::Instant;

use super::{RtpTimestamp, SeqNo, Ssrc};

/// RFC 3550 A.1: a jump forward of fewer than this many numbers is accepted as loss.
pub const MAX_DROPOUT: u16 = 3_000;
/// RFC 3550 A.1: a packet up to this many numbers behind the highest is a late (reordered or
/// duplicate) packet, not a restart.
pub const MAX_MISORDER: u16 = 100;
/// RFC 3550 A.1: a new source is valid after this many packets in sequence.
pub const MIN_SEQUENTIAL: u32 = 2;

const SEQUENCE_MODULUS: u64 = 1 << 16;

/// What [`SourceState::handle_packet`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In sequence or a gap within [`MAX_DROPOUT`]; the extended sequence number is the
    /// 16-bit number plus 65,536 × the wraps seen so far.
    InOrder {
        /// The packet's extended sequence number.
        extended: u64,
    },
    /// Behind the highest number seen, within [`MAX_MISORDER`]: reordered or duplicated.
    Late {
        /// The packet's extended sequence number.
        extended: u64,
    },
    /// The source is still on probation (RFC 3550 A.1); the packet is not counted.
    Probation,
    /// A jump too large to be loss or reordering; RFC 3550 A.1 drops it unless the next
    /// packet follows it, in which case the source is taken to have restarted.
    Jump,
    /// The packet followed a [`Verdict::Jump`]: the sequence was re-based on it.
    Restarted {
        /// The packet's extended sequence number after re-basing.
        extended: u64,
    },
}

impl Verdict {
    /// Whether the packet counts as received (and its payload may be played or relayed).
    pub fn is_valid(self) -> bool {
        matches!(
            self,
            Self::InOrder { .. } | Self::Late { .. } | Self::Restarted { .. }
        )
    }
}

/// Reception statistics, as an RTCP receiver report needs them (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statistics {
    /// Extended highest sequence number received.
    pub extended_highest: u64,
    /// Packets received (duplicates included, as A.3 counts them).
    pub received: u64,
    /// Packets expected: highest − base + 1.
    pub expected: u64,
    /// Cumulative packets lost: expected − received; negative when duplicates outnumber losses.
    pub cumulative_lost: i64,
    /// Interarrival jitter in timestamp units (A.8).
    pub jitter: u32,
}

/// Loss over the interval since the previous [`SourceState::take_interval`] (RFC 3550 A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalLoss {
    /// Fraction lost as a fixed-point number with the binary point at the left (0–255).
    pub fraction_lost: u8,
    /// Packets expected in the interval.
    pub expected: u64,
    /// Packets received in the interval.
    pub received: u64,
}

/// The receive-side state of one source.
#[derive(Debug, Clone)]
pub struct SourceState {
    ssrc: Ssrc,
    clock_rate: u32,
    /// Arrival times are converted to timestamp units relative to this instant.
    epoch: Instant,
    started: bool,
    max_seq: u16,
    /// Wraps seen, shifted: a multiple of 65,536 (RFC 3550 A.1 `cycles`).
    cycles: u64,
    base_seq: u64,
    /// The number after the last [`Verdict::Jump`], or `None` (A.1 `bad_seq`).
    bad_seq: Option<u16>,
    probation: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Relative transit time of the previous packet (A.8), once there is one.
    transit: Option<u32>,
    /// Jitter scaled by 16 (A.8's integer form).
    jitter_scaled: u32,
}

impl SourceState {
    /// State for a source first seen at `now`, whose RTP clock runs at `clock_rate` Hz.
    /// `probation` is how many packets in sequence make it valid: [`MIN_SEQUENTIAL`] for a
    /// source nobody signalled, 0 to accept the first packet.
    pub fn new(ssrc: Ssrc, clock_rate: u32, probation: u32, now: Instant) -> Self {
        Self {
            ssrc,
            clock_rate: clock_rate.max(1),
            epoch: now,
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: None,
            probation,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter_scaled: 0,
        }
    }

    /// The source this state tracks.
    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    /// Accounts one packet of this source that arrived at `now`.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        sequence: SeqNo,
        timestamp: RtpTimestamp,
    ) -> Verdict {
        let verdict = self.update_sequence(sequence.0);
        if verdict.is_valid() {
            self.update_jitter(now, timestamp);
        }
        verdict
    }

    /// The statistics so far.
    pub fn statistics(&self) -> Statistics {
        let extended_highest = self.cycles + u64::from(self.max_seq);
        let expected = if self.received == 0 && self.probation > 0 {
            0
        } else {
            (extended_highest + 1).saturating_sub(self.base_seq)
        };
        Statistics {
            extended_highest,
            received: self.received,
            expected,
            cumulative_lost: expected as i64 - self.received as i64,
            jitter: self.jitter_scaled >> 4,
        }
    }

    /// Loss since the previous call (RFC 3550 A.3), for one RTCP report interval.
    pub fn take_interval(&mut self) -> IntervalLoss {
        let statistics = self.statistics();
        let expected = statistics.expected.saturating_sub(self.expected_prior);
        let received = self.received.saturating_sub(self.received_prior);
        self.expected_prior = statistics.expected;
        self.received_prior = self.received;
        let lost = expected as i64 - received as i64;
        // RFC 3550 A.3: "if (expected_interval == 0 || lost_interval <= 0) fraction = 0".
        let fraction_lost = if expected == 0 || lost <= 0 {
            0
        } else {
            ((lost as u64) * 256 / expected).min(255) as u8
        };
        IntervalLoss {
            fraction_lost,
            expected,
            received,
        }
    }

    /// RFC 3550 A.1 `init_seq`.
    fn rebase(&mut self, sequence: u16) {
        self.base_seq = u64::from(sequence);
        self.max_seq = sequence;
        self.bad_seq = None;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// RFC 3550 A.1 `update_seq`, returning what the packet was.
    fn update_sequence(&mut self, sequence: u16) -> Verdict {
        if !self.started {
            // A.1: "the sequence number is set to the first packet's minus one" while on
            // probation, so that the first packet looks in sequence.
            self.started = true;
            if self.probation == 0 {
                self.rebase(sequence);
                self.received = 1;
                return Verdict::InOrder {
                    extended: u64::from(sequence),
                };
            }
            self.rebase(sequence);
            self.max_seq = sequence.wrapping_sub(1);
        }
        let delta = sequence.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            // A.1: a source is valid only after MIN_SEQUENTIAL packets in sequence.
            if delta == 1 {
                self.probation -= 1;
                self.max_seq = sequence;
                if self.probation == 0 {
                    self.rebase(sequence);
                    self.received = 1;
                    return Verdict::InOrder {
                        extended: u64::from(sequence),
                    };
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = sequence;
            }
            return Verdict::Probation;
        }
        if delta < MAX_DROPOUT {
            // In order, with a permissible gap; a smaller number means the 16 bits wrapped.
            if sequence < self.max_seq {
                self.cycles += SEQUENCE_MODULUS;
            }
            self.max_seq = sequence;
            self.received += 1;
            Verdict::InOrder {
                extended: self.cycles + u64::from(sequence),
            }
        } else if u32::from(delta) <= (SEQUENCE_MODULUS as u32) - u32::from(MAX_MISORDER) {
            // A.1: a very large jump. If the next packet follows it, the source restarted
            // (e.g. a sender that reset without changing SSRC); otherwise it is ignored.
            if self.bad_seq == Some(sequence) {
                self.rebase(sequence);
                self.received = 1;
                Verdict::Restarted {
                    extended: u64::from(sequence),
                }
            } else {
                self.bad_seq = Some(sequence.wrapping_add(1));
                Verdict::Jump
            }
        } else {
            // A.1: a duplicate or a reordered packet, counted as received. It belongs to the
            // current cycle unless its 16-bit number is above the highest, in which case it
            // was sent before the last wrap.
            self.received += 1;
            let extended = if sequence <= self.max_seq {
                self.cycles + u64::from(sequence)
            } else {
                (self.cycles + u64::from(sequence)).saturating_sub(SEQUENCE_MODULUS)
            };
            Verdict::Late { extended }
        }
    }

    /// RFC 3550 A.8: J(i) = J(i−1) + (|D(i−1,i)| − J(i−1))/16, in timestamp units, with the
    /// integer form that keeps J scaled by 16.
    fn update_jitter(&mut self, now: Instant, timestamp: RtpTimestamp) {
        let elapsed = now.saturating_duration_since(self.epoch);
        let arrival =
            (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u64 as u32;
        let transit = arrival.wrapping_sub(timestamp.0);
        if let Some(previous) = self.transit {
            let difference = (transit.wrapping_sub(previous) as i32).unsigned_abs();
            self.jitter_scaled = self
                .jitter_scaled
                .wrapping_add(difference)
                .wrapping_sub((self.jitter_scaled + 8) >> 4);
        }
        self.transit = Some(transit);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn trusted(now: Instant) -> SourceState {
        SourceState::new(Ssrc(1), 8_000, 0, now)
    }

    #[test]
    fn probation_holds_back_the_first_packets_of_an_unsignalled_source() {
        let start = Instant::now();
        let mut source = SourceState::new(Ssrc(1), 8_000, MIN_SEQUENTIAL, start);
        assert_eq!(
            source.handle_packet(start, SeqNo(10), RtpTimestamp(0)),
            Verdict::Probation
        );
        assert_eq!(
            source.handle_packet(start, SeqNo(11), RtpTimestamp(160)),
            Verdict::InOrder { extended: 11 }
        );
        assert_eq!(source.statistics().received, 1);
        // Out of sequence during probation restarts it.
        let mut other = SourceState::new(Ssrc(2), 8_000, MIN_SEQUENTIAL, start);
        other.handle_packet(start, SeqNo(10), RtpTimestamp(0));
        assert_eq!(
            other.handle_packet(start, SeqNo(50), RtpTimestamp(0)),
            Verdict::Probation
        );
        assert_eq!(
            other.handle_packet(start, SeqNo(51), RtpTimestamp(0)),
            Verdict::InOrder { extended: 51 }
        );
    }

    #[test]
    fn loss_is_expected_minus_received_and_the_fraction_covers_one_interval() {
        let start = Instant::now();
        let mut source = trusted(start);
        for sequence in [100u16, 101, 103, 104, 108, 109] {
            assert!(source
                .handle_packet(start, SeqNo(sequence), RtpTimestamp(0))
                .is_valid());
        }
        let statistics = source.statistics();
        assert_eq!(statistics.expected, 10);
        assert_eq!(statistics.received, 6);
        assert_eq!(statistics.cumulative_lost, 4);
        let interval = source.take_interval();
        // 4 of 10 lost: 0.4 × 256 = 102.4.
        assert_eq!(interval.fraction_lost, 102);
        source.handle_packet(start, SeqNo(110), RtpTimestamp(0));
        assert_eq!(source.take_interval().fraction_lost, 0);
    }

    #[test]
    fn a_big_jump_is_dropped_unless_the_next_packet_confirms_a_restart() {
        let start = Instant::now();
        let mut source = trusted(start);
        source.handle_packet(start, SeqNo(1), RtpTimestamp(0));
        assert_eq!(
            source.handle_packet(start, SeqNo(30_000), RtpTimestamp(0)),
            Verdict::Jump
        );
        assert_eq!(
            source.handle_packet(start, SeqNo(2), RtpTimestamp(0)),
            Verdict::InOrder { extended: 2 }
        );
        source.handle_packet(start, SeqNo(40_000), RtpTimestamp(0));
        assert_eq!(
            source.handle_packet(start, SeqNo(40_001), RtpTimestamp(0)),
            Verdict::Restarted { extended: 40_001 }
        );
        assert_eq!(source.statistics().received, 1);
    }

    #[test]
    fn jitter_is_zero_for_perfect_pacing_and_grows_with_arrival_variance() {
        let start = Instant::now();
        let mut steady = trusted(start);
        let mut wobbly = trusted(start);
        for index in 0..200u32 {
            let sent = Duration::from_millis(20 * u64::from(index));
            let timestamp = RtpTimestamp(1_000 + 160 * index);
            steady.handle_packet(start + sent, SeqNo(index as u16), timestamp);
            // Every other packet arrives 10 ms late: |D| = 80 timestamp units each time.
            let late = Duration::from_millis(10 * u64::from(index % 2));
            wobbly.handle_packet(start + sent + late, SeqNo(index as u16), timestamp);
        }
        assert_eq!(steady.statistics().jitter, 0);
        // J converges to |D| = 80 (A.8's estimator with constant |D|).
        let jitter = wobbly.statistics().jitter;
        assert!((75..=80).contains(&jitter), "jitter {jitter}");
    }
}
