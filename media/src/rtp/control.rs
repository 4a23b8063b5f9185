//! RTCP for one relayed leg (RFC 3550 §6), sans-IO: when to send the next compound report,
//! what goes in it, and what the peer's reports say.
//!
//! Each leg is its own two-party RTP session between the peer and Tandem, so the report
//! carries one reception block (about the peer's stream) and, when Tandem sent RTP on the leg
//! during the interval, sender information (RFC 3550 §6.4: "the SR is issued if a site has
//! sent any data packets during the interval since issuing the last report or the previous
//! one, otherwise the RR is issued").
//!
//! Simplifications of RFC 3550 §6.2/§6.3, deliberate for a two-party session:
//! - The interval is the fixed minimum (5 s by default) times a uniform random factor in
//!   0.5–1.5 (§6.3.1's randomization). The bandwidth-based term of §6.2 never exceeds the
//!   minimum with two members at telephony rates (5 % of 64 kbit/s shared by two members
//!   gives well under 5 s), so it is left out; so are the halved initial interval, timer
//!   reconsideration (§6.3.3) and BYE back-off, which matter only for large groups.
//! - The SR's RTP timestamp is the sender's next timestamp, not extrapolated to the wall-clock
//!   instant of the report; a relay's timestamps follow the incoming stream, not a local clock.
//!
//! Wall-clock time for NTP timestamps comes from one `(Instant, SystemTime)` pair taken at
//! construction and is advanced by `now`, so the core never reads the clock.

use std::time::{Duration, Instant, SystemTime};

use super::rtcp::{self, Report, ReportBlock, RtcpError, SenderInfo};
use super::source::SourceState;
use super::{Sender, Ssrc};

/// RFC 3550 §6.2: "The RECOMMENDED value for a fixed minimum interval is 5 seconds."
pub const DEFAULT_MINIMUM_INTERVAL: Duration = Duration::from_secs(5);

/// The largest RTCP datagram read; longer ones are dropped as malformed.
pub const MAX_RTCP_LEN: usize = 1500;

/// What the peer last reported about the stream Tandem sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerReception {
    /// Fraction of Tandem's packets lost in the peer's last interval, 8-bit fixed point.
    pub fraction_lost: u8,
    /// Cumulative packets of Tandem's stream the peer lost.
    pub cumulative_lost: i32,
    /// The peer's interarrival jitter for Tandem's stream, in timestamp units.
    pub jitter: u32,
    /// Extended highest sequence number the peer received.
    pub extended_highest: u32,
    /// Round-trip time from the block's LSR and DLSR (RFC 3550 §6.4.1), when the peer had
    /// received one of our SRs.
    pub round_trip_time: Option<Duration>,
}

/// RTCP counters and the peer's latest reports on one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlReport {
    /// Compound packets Tandem sent that were SRs.
    pub sender_reports_sent: u64,
    /// Compound packets Tandem sent that were RRs.
    pub receiver_reports_sent: u64,
    /// Compound packets that could not be sent at once (dropped).
    pub send_failures: u64,
    /// SRs and RRs received from the peer.
    pub reports_received: u64,
    /// RTCP datagrams dropped as malformed, oversized or from an address not accepted.
    pub malformed: u64,
    /// The peer's latest report block about Tandem's stream.
    pub peer_reception: Option<PeerReception>,
    /// The sender information of the peer's latest SR.
    pub peer_sender: Option<SenderInfo>,
}

/// The RTCP state of one leg.
#[derive(Debug, Clone)]
pub struct LegControl {
    cname: String,
    minimum_interval: Duration,
    /// The wall clock at `epoch`, for NTP timestamps.
    epoch: Instant,
    epoch_wallclock: SystemTime,
    next_report: Instant,
    /// Our packet count at the previous report, to tell whether we sent in the interval.
    packets_at_last_report: u64,
    /// The middle 32 bits of the peer's last SR timestamp and when it arrived (for LSR/DLSR).
    last_peer_sender_report: Option<(u32, Instant)>,
    report: ControlReport,
}

impl LegControl {
    /// RTCP for a leg starting at `now`, when the wall clock reads `wallclock`. The first
    /// report is due after one randomized interval; `random` in 0..1 draws the factor.
    pub fn new(
        cname: &str,
        minimum_interval: Duration,
        now: Instant,
        wallclock: SystemTime,
        random: f64,
    ) -> Self {
        Self {
            cname: cname.to_owned(),
            minimum_interval,
            epoch: now,
            epoch_wallclock: wallclock,
            next_report: now + randomized_interval(minimum_interval, random),
            packets_at_last_report: 0,
            last_peer_sender_report: None,
            report: ControlReport::default(),
        }
    }

    /// When the next report is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_report
    }

    /// If a report is due at `now`, writes the compound packet into `buffer` (replacing its
    /// contents) and schedules the next one with the factor drawn from `random` (0..1).
    /// `sender` is the stream Tandem sends to this leg; `source` is the peer's stream as
    /// received, whose interval loss this report consumes. Returns whether a packet was
    /// written.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        random: f64,
        sender: &Sender,
        source: Option<&mut SourceState>,
        buffer: &mut Vec<u8>,
    ) -> bool {
        if now < self.next_report {
            return false;
        }
        self.next_report = now + randomized_interval(self.minimum_interval, random);
        buffer.clear();
        let blocks: Vec<ReportBlock> = source
            .map(|source| self.reception_block(now, source))
            .into_iter()
            .collect();
        let sent_in_interval = sender.packets_sent() > self.packets_at_last_report;
        self.packets_at_last_report = sender.packets_sent();
        if sent_in_interval {
            let info = SenderInfo {
                ntp_timestamp: self.ntp_timestamp(now),
                rtp_timestamp: sender.next_timestamp(),
                // RFC 3550 §6.4.1: the counts wrap at 32 bits.
                packet_count: sender.packets_sent() as u32,
                octet_count: sender.octets_sent() as u32,
            };
            rtcp::write_sender_report(sender.ssrc(), &info, &blocks, buffer);
            self.report.sender_reports_sent += 1;
        } else {
            rtcp::write_receiver_report(sender.ssrc(), &blocks, buffer);
            self.report.receiver_reports_sent += 1;
        }
        // RFC 3550 §6.1: every compound packet carries an SDES CNAME.
        rtcp::write_cname(sender.ssrc(), &self.cname, buffer);
        true
    }

    /// Reads an RTCP datagram that arrived at `now` from the peer. `our_ssrc` is the SSRC
    /// Tandem sends to this leg: only blocks about it are recorded. A malformed datagram is
    /// counted and otherwise ignored.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
        our_ssrc: Ssrc,
    ) -> Result<(), RtcpError> {
        if datagram.len() > MAX_RTCP_LEN {
            self.report.malformed += 1;
            return Err(RtcpError::Truncated);
        }
        let reports = rtcp::parse(datagram).inspect_err(|_| self.report.malformed += 1)?;
        for report in reports {
            self.report.reports_received += 1;
            let blocks = match report {
                Report::Sender { info, blocks, .. } => {
                    self.report.peer_sender = Some(info);
                    // RFC 3550 §6.4.1 LSR: "the middle 32 bits out of 64 in the NTP timestamp".
                    self.last_peer_sender_report = Some(((info.ntp_timestamp >> 16) as u32, now));
                    blocks
                }
                Report::Receiver { blocks, .. } => blocks,
            };
            if let Some(block) = blocks.iter().find(|block| block.ssrc == our_ssrc) {
                self.report.peer_reception = Some(PeerReception {
                    fraction_lost: block.fraction_lost,
                    cumulative_lost: block.cumulative_lost,
                    jitter: block.jitter,
                    extended_highest: block.extended_highest,
                    round_trip_time: self.round_trip_time(now, block),
                });
            }
        }
        Ok(())
    }

    /// Counts a datagram dropped before parsing (oversized, or from a source not accepted).
    pub fn count_malformed(&mut self) {
        self.report.malformed += 1;
    }

    /// Counts a compound packet that could not be sent.
    pub fn count_send_failure(&mut self) {
        self.report.send_failures += 1;
    }

    /// The counters and the peer's latest reports.
    pub fn report(&self) -> ControlReport {
        self.report
    }

    /// The 64-bit NTP timestamp (RFC 3550 §4: seconds since 1900 and a 32-bit fraction) of
    /// `now` on the wall clock captured at construction.
    pub fn ntp_timestamp(&self, now: Instant) -> u64 {
        rtcp::ntp_timestamp(self.epoch_wallclock + now.saturating_duration_since(self.epoch))
    }

    fn reception_block(&self, now: Instant, source: &mut SourceState) -> ReportBlock {
        let mut block = rtcp::report_block(source);
        if let Some((last, arrived)) = self.last_peer_sender_report {
            block.last_sender_report = last;
            block.delay_since_last_sender_report =
                to_short_ntp(now.saturating_duration_since(arrived));
        }
        block
    }

    /// RFC 3550 §6.4.1: RTT = A − LSR − DLSR in the middle 32 bits of NTP time, where A is
    /// the arrival time of the report. LSR 0 means the peer has had no SR from us.
    fn round_trip_time(&self, now: Instant, block: &ReportBlock) -> Option<Duration> {
        if block.last_sender_report == 0 {
            return None;
        }
        let arrival = (self.ntp_timestamp(now) >> 16) as u32;
        let round_trip = arrival
            .wrapping_sub(block.last_sender_report)
            .wrapping_sub(block.delay_since_last_sender_report);
        // A "negative" result (peer clock games, or a forged block) wraps to a huge value;
        // anything over a minute is not a round trip of this call.
        let round_trip = Duration::from_nanos((u64::from(round_trip) * 1_000_000_000) >> 16);
        (round_trip <= Duration::from_secs(60)).then_some(round_trip)
    }
}

/// The minimum interval times a factor in 0.5–1.5 drawn from `random` in 0..1 (RFC 3550
/// §6.3.1: "to avoid unintended synchronization ... the interval ... is randomized").
pub fn randomized_interval(minimum: Duration, random: f64) -> Duration {
    minimum.mul_f64(0.5 + random.clamp(0.0, 1.0))
}

/// A duration in units of 1/65,536 s, saturating (the DLSR field).
fn to_short_ntp(duration: Duration) -> u32 {
    let units = duration.as_nanos() * 65_536 / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::rtp::{PayloadType, RtpTimestamp, SeqNo};

    fn control(start: Instant) -> LegControl {
        LegControl::new(
            "tandem@test",
            DEFAULT_MINIMUM_INTERVAL,
            start,
            UNIX_EPOCH + Duration::from_secs(1_000),
            0.5,
        )
    }

    #[test]
    fn the_interval_is_randomized_between_half_and_one_and_a_half_times_the_minimum() {
        let minimum = Duration::from_secs(5);
        assert_eq!(
            randomized_interval(minimum, 0.0),
            Duration::from_millis(2_500)
        );
        assert_eq!(randomized_interval(minimum, 0.5), minimum);
        assert_eq!(
            randomized_interval(minimum, 1.0),
            Duration::from_millis(7_500)
        );
        assert_eq!(
            randomized_interval(minimum, 7.0),
            Duration::from_millis(7_500)
        );
    }

    #[test]
    fn an_rr_is_sent_before_we_send_media_and_an_sr_after() {
        let start = Instant::now();
        let mut control = control(start);
        let mut sender = Sender::new(Ssrc(7), SeqNo(0), RtpTimestamp(0));
        let mut buffer = Vec::new();
        assert_eq!(control.poll_timeout(), start + Duration::from_secs(5));
        assert!(!control.handle_timeout(start, 0.5, &sender, None, &mut buffer));
        let due = control.poll_timeout();
        assert!(control.handle_timeout(due, 0.0, &sender, None, &mut buffer));
        assert!(matches!(
            rtcp::parse(&buffer).unwrap().as_slice(),
            [Report::Receiver { ssrc: Ssrc(7), blocks }] if blocks.is_empty()
        ));
        assert_eq!(control.poll_timeout(), due + Duration::from_millis(2_500));
        for _ in 0..3 {
            sender.stamp(PayloadType::PCMU, 160, 160);
        }
        let mut source = SourceState::new(Ssrc(9), 8_000, 0, start);
        source.handle_packet(start, SeqNo(1), RtpTimestamp(0));
        let due = control.poll_timeout();
        assert!(control.handle_timeout(due, 0.5, &sender, Some(&mut source), &mut buffer));
        let reports = rtcp::parse(&buffer).unwrap();
        let [Report::Sender { ssrc, info, blocks }] = reports.as_slice() else {
            panic!("expected one SR, got {reports:?}");
        };
        assert_eq!(*ssrc, Ssrc(7));
        assert_eq!((info.packet_count, info.octet_count), (3, 480));
        assert_eq!(info.ntp_timestamp, control.ntp_timestamp(due));
        assert_eq!(blocks[0].ssrc, Ssrc(9));
        // Nothing sent since: the next report is an RR again.
        let due = control.poll_timeout();
        assert!(control.handle_timeout(due, 0.5, &sender, None, &mut buffer));
        assert!(matches!(
            rtcp::parse(&buffer).unwrap()[0],
            Report::Receiver { .. }
        ));
        let report = control.report();
        assert_eq!(
            (report.sender_reports_sent, report.receiver_reports_sent),
            (1, 2)
        );
    }

    #[test]
    fn the_round_trip_time_comes_from_lsr_and_dlsr() {
        let start = Instant::now();
        let mut control = control(start);
        // Our SR went out at start + 1 s; the peer held it 100 ms and its RR arrives at
        // start + 1.35 s, so the network took 250 ms both ways.
        let sent = (control.ntp_timestamp(start + Duration::from_secs(1)) >> 16) as u32;
        let block = ReportBlock {
            ssrc: Ssrc(7),
            fraction_lost: 64,
            cumulative_lost: 12,
            extended_highest: 500,
            jitter: 30,
            last_sender_report: sent,
            delay_since_last_sender_report: 65_536 / 10,
        };
        let mut datagram = Vec::new();
        rtcp::write_receiver_report(Ssrc(9), &[block], &mut datagram);
        control
            .handle_datagram(start + Duration::from_millis(1_350), &datagram, Ssrc(7))
            .unwrap();
        let reception = control.report().peer_reception.unwrap();
        assert_eq!(
            (reception.fraction_lost, reception.cumulative_lost),
            (64, 12)
        );
        assert_eq!(reception.jitter, 30);
        let round_trip = reception.round_trip_time.unwrap();
        let error = round_trip.abs_diff(Duration::from_millis(250));
        assert!(error < Duration::from_micros(100), "{round_trip:?}");
        // A block about someone else's stream is not ours; LSR 0 has no round trip.
        let other = ReportBlock {
            ssrc: Ssrc(8),
            ..block
        };
        let unsent = ReportBlock {
            last_sender_report: 0,
            ..block
        };
        let mut datagram = Vec::new();
        rtcp::write_receiver_report(Ssrc(9), &[other, unsent], &mut datagram);
        control.handle_datagram(start, &datagram, Ssrc(7)).unwrap();
        assert_eq!(
            control.report().peer_reception.unwrap().round_trip_time,
            None
        );
        assert_eq!(control.report().reports_received, 2);
        assert!(control
            .handle_datagram(start, &[0x80, 201], Ssrc(7))
            .is_err());
        let oversized = [datagram.as_slice(); 64].concat();
        assert!(oversized.len() > MAX_RTCP_LEN);
        assert!(control.handle_datagram(start, &oversized, Ssrc(7)).is_err());
        assert_eq!(control.report().malformed, 2);
        assert_eq!(control.report().reports_received, 2);
    }

    #[test]
    fn our_blocks_echo_the_peers_last_sr_with_the_delay_since() {
        let start = Instant::now();
        let mut control = control(start);
        let info = SenderInfo {
            ntp_timestamp: 0x0001_2345_6789_0000,
            rtp_timestamp: RtpTimestamp(0),
            packet_count: 1,
            octet_count: 160,
        };
        let mut datagram = Vec::new();
        rtcp::write_sender_report(Ssrc(9), &info, &[], &mut datagram);
        control.handle_datagram(start, &datagram, Ssrc(7)).unwrap();
        assert_eq!(control.report().peer_sender, Some(info));
        let mut source = SourceState::new(Ssrc(9), 8_000, 0, start);
        source.handle_packet(start, SeqNo(1), RtpTimestamp(0));
        let sender = Sender::new(Ssrc(7), SeqNo(0), RtpTimestamp(0));
        let due = start + Duration::from_millis(5_500);
        let mut buffer = Vec::new();
        assert!(control.handle_timeout(due, 0.5, &sender, Some(&mut source), &mut buffer));
        let reports = rtcp::parse(&buffer).unwrap();
        let [Report::Receiver { blocks, .. }] = reports.as_slice() else {
            panic!("expected one RR, got {reports:?}");
        };
        assert_eq!(blocks[0].last_sender_report, 0x2345_6789);
        assert_eq!(blocks[0].delay_since_last_sender_report, 65_536 * 11 / 2);
    }
}
