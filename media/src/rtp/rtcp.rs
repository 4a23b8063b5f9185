//! RTCP sender and receiver reports (RFC 3550 §6.4) with the statistics of [`SourceState`],
//! and the SDES CNAME every compound packet carries (§6.1): building, and parsing of SR/RR
//! out of a compound packet (other packet types are skipped).
//!
//! Sans-IO: the caller supplies the wall-clock NTP timestamp and decides when to send; the
//! schedule and the per-leg state are in [`super::control`].

use std::time::{SystemTime, UNIX_EPOCH};

use super::source::SourceState;
use super::{RtpTimestamp, Ssrc};

/// RTCP packet type of a sender report (RFC 3550 §12.1).
pub const SENDER_REPORT: u8 = 200;
/// RTCP packet type of a receiver report.
pub const RECEIVER_REPORT: u8 = 201;
/// RTCP packet type of source description.
pub const SOURCE_DESCRIPTION: u8 = 202;
/// The most report blocks one SR/RR holds (5-bit count).
pub const MAX_REPORT_BLOCKS: usize = 31;
/// The most RTCP packets read from one compound datagram.
pub const MAX_PACKETS_PER_DATAGRAM: usize = 16;

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: Ssrc,
    /// Fraction lost since the previous report, 8-bit fixed point.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire, clamped).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (low 32 bits).
    pub extended_highest: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from the source, or 0.
    pub last_sender_report: u32,
    /// Delay since that SR, in 1/65,536 s, or 0.
    pub delay_since_last_sender_report: u32,
}

/// The sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// Wall-clock time of the report, 64-bit NTP format.
    pub ntp_timestamp: u64,
    /// The same instant in the stream's RTP timestamp units.
    pub rtp_timestamp: RtpTimestamp,
    /// Packets sent since the start of transmission (low 32 bits).
    pub packet_count: u32,
    /// Payload octets sent (low 32 bits).
    pub octet_count: u32,
}

/// An SR or RR read from a compound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A sender report.
    Sender {
        /// The reporting source.
        ssrc: Ssrc,
        /// Its sender information.
        info: SenderInfo,
        /// Its reception reports.
        blocks: Vec<ReportBlock>,
    },
    /// A receiver report.
    Receiver {
        /// The reporting source.
        ssrc: Ssrc,
        /// Its reception reports.
        blocks: Vec<ReportBlock>,
    },
}

/// Why an RTCP datagram could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// A packet header is cut short, or its length runs past the datagram.
    #[error("RTCP packet truncated")]
    Truncated,
    /// The version field is not 2.
    #[error("RTCP version {0} is not 2")]
    UnsupportedVersion(u8),
    /// An SR/RR's report count does not fit its length.
    #[error("RTCP report count does not match the packet length")]
    BadReportCount,
    /// More packets than [`MAX_PACKETS_PER_DATAGRAM`].
    #[error("too many RTCP packets in one datagram")]
    TooManyPackets,
}

/// A reception report block for `source`, taking its loss interval (RFC 3550 A.3).
pub fn report_block(source: &mut SourceState) -> ReportBlock {
    let interval = source.take_interval();
    let statistics = source.statistics();
    ReportBlock {
        ssrc: source.ssrc(),
        fraction_lost: interval.fraction_lost,
        // §6.4.1: 24-bit signed; clamp rather than wrap.
        cumulative_lost: statistics.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as i32,
        extended_highest: statistics.extended_highest as u32,
        jitter: statistics.jitter,
        last_sender_report: 0,
        delay_since_last_sender_report: 0,
    }
}

/// The 64-bit NTP timestamp of a wall-clock time (RFC 3550 §4: seconds since 1900 in the
/// high 32 bits, fraction in the low 32).
pub fn ntp_timestamp(time: SystemTime) -> u64 {
    const SECONDS_1900_TO_1970: u64 = 2_208_988_800;
    let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs() + SECONDS_1900_TO_1970;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// Appends an SR (RFC 3550 §6.4.1) to `buffer`. At most [`MAX_REPORT_BLOCKS`] blocks are
/// written.
pub fn write_sender_report(
    ssrc: Ssrc,
    info: &SenderInfo,
    blocks: &[ReportBlock],
    buffer: &mut Vec<u8>,
) {
    let blocks = &blocks[..blocks.len().min(MAX_REPORT_BLOCKS)];
    write_header(
        SENDER_REPORT,
        blocks.len() as u8,
        6 + 6 * blocks.len(),
        buffer,
    );
    buffer.extend_from_slice(&ssrc.0.to_be_bytes());
    buffer.extend_from_slice(&info.ntp_timestamp.to_be_bytes());
    buffer.extend_from_slice(&info.rtp_timestamp.0.to_be_bytes());
    buffer.extend_from_slice(&info.packet_count.to_be_bytes());
    buffer.extend_from_slice(&info.octet_count.to_be_bytes());
    write_blocks(blocks, buffer);
}

/// Appends an RR (RFC 3550 §6.4.2) to `buffer`.
pub fn write_receiver_report(ssrc: Ssrc, blocks: &[ReportBlock], buffer: &mut Vec<u8>) {
    let blocks = &blocks[..blocks.len().min(MAX_REPORT_BLOCKS)];
    write_header(
        RECEIVER_REPORT,
        blocks.len() as u8,
        1 + 6 * blocks.len(),
        buffer,
    );
    buffer.extend_from_slice(&ssrc.0.to_be_bytes());
    write_blocks(blocks, buffer);
}

/// Appends an SDES packet with one chunk holding the CNAME (RFC 3550 §6.5.1), which §6.1
/// requires in every compound packet. The CNAME is cut to 255 octets.
pub fn write_cname(ssrc: Ssrc, cname: &str, buffer: &mut Vec<u8>) {
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC + item (type, length, text) + at least one null octet, padded to 32 bits.
    let chunk_len = (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    write_header(SOURCE_DESCRIPTION, 1, chunk_len / 4, buffer);
    let start = buffer.len();
    buffer.extend_from_slice(&ssrc.0.to_be_bytes());
    buffer.push(1); // CNAME
    buffer.push(cname.len() as u8);
    buffer.extend_from_slice(cname);
    buffer.resize(start + chunk_len, 0);
}

/// Reads the SRs and RRs of a compound RTCP datagram; other packet types are skipped.
pub fn parse(datagram: &[u8]) -> Result<Vec<Report>, RtcpError> {
    let mut reports = Vec::new();
    let mut rest = datagram;
    let mut packets = 0;
    while !rest.is_empty() {
        packets += 1;
        if packets > MAX_PACKETS_PER_DATAGRAM {
            return Err(RtcpError::TooManyPackets);
        }
        let [first, packet_type, high, low, ..] = *rest else {
            return Err(RtcpError::Truncated);
        };
        if first >> 6 != 2 {
            return Err(RtcpError::UnsupportedVersion(first >> 6));
        }
        // §6.4.1: length is in 32-bit words minus one, header included.
        let length = (usize::from(u16::from_be_bytes([high, low])) + 1) * 4;
        let packet = rest.get(..length).ok_or(RtcpError::Truncated)?;
        rest = &rest[length..];
        let count = usize::from(first & 0x1F);
        match packet_type {
            SENDER_REPORT => {
                let body = packet.get(4..).ok_or(RtcpError::Truncated)?;
                if body.len() < 24 + count * 24 {
                    return Err(RtcpError::BadReportCount);
                }
                reports.push(Report::Sender {
                    ssrc: Ssrc(word(body, 0)),
                    info: SenderInfo {
                        ntp_timestamp: (u64::from(word(body, 4)) << 32) | u64::from(word(body, 8)),
                        rtp_timestamp: RtpTimestamp(word(body, 12)),
                        packet_count: word(body, 16),
                        octet_count: word(body, 20),
                    },
                    blocks: read_blocks(&body[24..], count),
                });
            }
            RECEIVER_REPORT => {
                let body = packet.get(4..).ok_or(RtcpError::Truncated)?;
                if body.len() < 4 + count * 24 {
                    return Err(RtcpError::BadReportCount);
                }
                reports.push(Report::Receiver {
                    ssrc: Ssrc(word(body, 0)),
                    blocks: read_blocks(&body[4..], count),
                });
            }
            _ => {}
        }
    }
    Ok(reports)
}

fn write_header(packet_type: u8, count: u8, words_after_header: usize, buffer: &mut Vec<u8>) {
    buffer.push(0x80 | (count & 0x1F));
    buffer.push(packet_type);
    buffer.extend_from_slice(&(words_after_header as u16).to_be_bytes());
}

fn write_blocks(blocks: &[ReportBlock], buffer: &mut Vec<u8>) {
    for block in blocks {
        buffer.extend_from_slice(&block.ssrc.0.to_be_bytes());
        let lost = (block.cumulative_lost as u32) & 0x00FF_FFFF;
        buffer.extend_from_slice(&((u32::from(block.fraction_lost) << 24) | lost).to_be_bytes());
        buffer.extend_from_slice(&block.extended_highest.to_be_bytes());
        buffer.extend_from_slice(&block.jitter.to_be_bytes());
        buffer.extend_from_slice(&block.last_sender_report.to_be_bytes());
        buffer.extend_from_slice(&block.delay_since_last_sender_report.to_be_bytes());
    }
}

/// Reads `count` blocks; the caller checked that `bytes` holds them.
fn read_blocks(bytes: &[u8], count: usize) -> Vec<ReportBlock> {
    bytes
        .chunks_exact(24)
        .take(count)
        .map(|block| {
            let loss = word(block, 4);
            // Sign-extend the 24-bit cumulative loss.
            let cumulative_lost = ((loss << 8) as i32) >> 8;
            ReportBlock {
                ssrc: Ssrc(word(block, 0)),
                fraction_lost: (loss >> 24) as u8,
                cumulative_lost,
                extended_highest: word(block, 8),
                jitter: word(block, 12),
                last_sender_report: word(block, 16),
                delay_since_last_sender_report: word(block, 20),
            }
        })
        .collect()
}

/// The big-endian 32-bit word at `offset`; callers check lengths first, and a short slice
/// reads as zeros rather than panicking.
fn word(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(slice) = bytes.get(offset..offset + 4) {
        word.copy_from_slice(slice);
    }
    u32::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::rtp::SeqNo;

    #[test]
    fn a_compound_sr_with_cname_parses_back_with_the_source_statistics() {
        let now = Instant::now();
        let mut source = SourceState::new(Ssrc(9), 8_000, 0, now);
        for sequence in [65_534u16, 65_535, 1, 2] {
            source.handle_packet(now, SeqNo(sequence), RtpTimestamp(0));
        }
        let block = report_block(&mut source);
        assert_eq!(block.extended_highest, 65_536 + 2);
        assert_eq!(block.cumulative_lost, 1);
        assert_eq!(block.fraction_lost, 51); // 1 of 5: 0.2 × 256
        let info = SenderInfo {
            ntp_timestamp: ntp_timestamp(UNIX_EPOCH + Duration::from_millis(1_500)),
            rtp_timestamp: RtpTimestamp(123),
            packet_count: 50,
            octet_count: 8_000,
        };
        let mut buffer = Vec::new();
        write_sender_report(Ssrc(1), &info, &[block], &mut buffer);
        write_cname(Ssrc(1), "tandem@example", &mut buffer);
        assert_eq!(buffer.len() % 4, 0);
        let reports = parse(&buffer).unwrap();
        assert_eq!(
            reports,
            [Report::Sender {
                ssrc: Ssrc(1),
                info,
                blocks: vec![block]
            }]
        );
        // 1970 + 1.5 s: seconds since 1900 and a half.
        assert_eq!(info.ntp_timestamp >> 32, 2_208_988_801);
        assert_eq!(info.ntp_timestamp as u32, 0x8000_0000);
    }

    #[test]
    fn negative_loss_survives_the_24_bit_field_and_bad_packets_are_errors() {
        let block = ReportBlock {
            ssrc: Ssrc(3),
            fraction_lost: 0,
            cumulative_lost: -2,
            extended_highest: 7,
            jitter: 4,
            last_sender_report: 0,
            delay_since_last_sender_report: 0,
        };
        let mut buffer = Vec::new();
        write_receiver_report(Ssrc(2), &[block], &mut buffer);
        assert_eq!(
            parse(&buffer).unwrap(),
            [Report::Receiver {
                ssrc: Ssrc(2),
                blocks: vec![block]
            }]
        );
        assert_eq!(
            parse(&buffer[..buffer.len() - 4]),
            Err(RtcpError::Truncated)
        );
        let mut wrong_count = buffer.clone();
        wrong_count[0] = 0x82;
        assert_eq!(parse(&wrong_count), Err(RtcpError::BadReportCount));
        assert_eq!(
            parse(&[0x40, 201, 0, 0]),
            Err(RtcpError::UnsupportedVersion(1))
        );
        assert_eq!(parse(&[0x80]), Err(RtcpError::Truncated));
        let many = [0x80, 203, 0, 0].repeat(MAX_PACKETS_PER_DATAGRAM + 1);
        assert_eq!(parse(&many), Err(RtcpError::TooManyPackets));
    }
}
