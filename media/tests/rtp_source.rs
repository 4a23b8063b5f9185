//! Property tests of the receive-side sequence tracking (RFC 3550 A.1): extended sequence
//! numbers stay exact across any number of 16-bit wraps, and reordering within the misorder
//! window neither loses nor double-counts packets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::time::{Duration, Instant};

use media::rtp::source::{SourceState, Verdict, MAX_MISORDER};
use media::rtp::{RtpTimestamp, SeqNo, Ssrc};
use proptest::prelude::*;

fn extended(verdict: Verdict) -> Option<u64> {
    match verdict {
        Verdict::InOrder { extended } | Verdict::Late { extended } => Some(extended),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Packets in order from any start, with random gaps below the dropout limit, carry
    /// extended numbers equal to the true count, across several wraps.
    #[test]
    fn extended_sequence_numbers_are_exact_across_wraps(
        start in any::<u16>(),
        gaps in prop::collection::vec(1u64..50, 1..4_000),
    ) {
        let now = Instant::now();
        let mut source = SourceState::new(Ssrc(1), 8_000, 0, now);
        let mut truth = u64::from(start);
        prop_assert_eq!(
            source.handle_packet(now, SeqNo(start), RtpTimestamp(0)),
            Verdict::InOrder { extended: truth }
        );
        let mut received = 1;
        for gap in gaps {
            truth += gap;
            let verdict = source.handle_packet(now, SeqNo(truth as u16), RtpTimestamp(0));
            prop_assert_eq!(verdict, Verdict::InOrder { extended: truth });
            received += 1;
        }
        let statistics = source.statistics();
        prop_assert_eq!(statistics.extended_highest, truth);
        prop_assert_eq!(statistics.expected, truth - u64::from(start) + 1);
        prop_assert_eq!(statistics.received, received);
        prop_assert_eq!(statistics.cumulative_lost, (statistics.expected - received) as i64);
    }

    /// A stream shuffled within windows smaller than the misorder limit, crossing a wrap,
    /// is accepted packet for packet with each packet's true extended number, and nothing
    /// counts as lost.
    #[test]
    fn reordering_within_the_misorder_window_keeps_true_numbers(
        start in 65_000u16..=65_535,
        count in 200usize..3_000,
        window in 2usize..(MAX_MISORDER as usize),
        seed in any::<u64>(),
    ) {
        let now = Instant::now();
        let mut order: Vec<u64> = (0..count as u64).map(|index| u64::from(start) + index).collect();
        // Shuffle inside consecutive chunks (keeping the first packet first), so no packet
        // moves more than `window` places.
        let mut state = seed | 1;
        for chunk in order[1..].chunks_mut(window) {
            for index in (1..chunk.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.swap(index, (state % (index as u64 + 1)) as usize);
            }
        }
        let mut source = SourceState::new(Ssrc(1), 8_000, 0, now);
        for (index, &truth) in order.iter().enumerate() {
            let arrival = now + Duration::from_millis(20 * index as u64);
            let verdict = source.handle_packet(arrival, SeqNo(truth as u16), RtpTimestamp(0));
            prop_assert_eq!(extended(verdict), Some(truth), "packet {} verdict {:?}", index, verdict);
        }
        let statistics = source.statistics();
        prop_assert_eq!(statistics.extended_highest, u64::from(start) + count as u64 - 1);
        prop_assert_eq!(statistics.received, count as u64);
        prop_assert_eq!(statistics.cumulative_lost, 0);
    }
}

#[test]
fn a_duplicate_counts_as_received_and_makes_loss_negative() {
    let now = Instant::now();
    let mut source = SourceState::new(Ssrc(1), 8_000, 0, now);
    for sequence in [1u16, 2, 2, 3] {
        assert!(source
            .handle_packet(now, SeqNo(sequence), RtpTimestamp(0))
            .is_valid());
    }
    assert_eq!(source.statistics().cumulative_lost, -1);
}
