//! RTP packets (RFC 3550 §5.1): parsing through `rtp-rs` (which validates version, CSRC count,
//! header extension and padding against the buffer length) and building of the fixed 12-byte
//! header plus payload into a caller's reusable buffer.
//!
//! Tandem never sends CSRCs, header extensions or padding, so the builder writes only the
//! fixed header; the parser accepts all three and hands back the payload without them.

use super::{PayloadType, RtpTimestamp, SeqNo, Ssrc};

/// Length of the fixed RTP header (RFC 3550 §5.1).
pub const HEADER_LEN: usize = 12;

/// The largest datagram the relay and player accept or send: an Ethernet MTU. G.711 at 20 ms
/// is 172 bytes; anything near this bound is not telephony audio.
pub const MAX_PACKET_LEN: usize = 1500;

/// The header fields Tandem reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The payload type (7 bits).
    pub payload_type: PayloadType,
    /// The marker bit; for audio, the first packet of a talkspurt (RFC 3551 §4.1).
    pub marker: bool,
    /// The sequence number.
    pub sequence: SeqNo,
    /// The sampling instant of the first octet of the payload.
    pub timestamp: RtpTimestamp,
    /// The synchronisation source.
    pub ssrc: Ssrc,
}

/// A parsed RTP packet borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The payload, without CSRCs, header extension or padding.
    pub payload: &'a [u8],
}

/// Why a datagram is not a usable RTP packet. All of these are the peer's fault; the relay
/// drops such datagrams and counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the fixed header.
    #[error("datagram of {length} bytes is shorter than an RTP header")]
    TooShort {
        /// The datagram's length.
        length: usize,
    },
    /// Longer than [`MAX_PACKET_LEN`].
    #[error("datagram of {length} bytes is longer than {MAX_PACKET_LEN}")]
    TooLong {
        /// The datagram's length.
        length: usize,
    },
    /// The version field is not 2.
    #[error("RTP version {version} is not 2")]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// The CSRC list or header extension runs past the end of the datagram.
    #[error("RTP header of {header_length} bytes is truncated")]
    HeaderTruncated {
        /// How long the header claims to be.
        header_length: usize,
    },
    /// The padding count is zero or larger than the payload.
    #[error("RTP padding length {padding} is invalid")]
    InvalidPadding {
        /// The padding count found in the last octet.
        padding: u8,
    },
}

impl<'a> Packet<'a> {
    /// Parses one datagram.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, PacketError> {
        if datagram.len() > MAX_PACKET_LEN {
            return Err(PacketError::TooLong {
                length: datagram.len(),
            });
        }
        let reader = rtp_rs::RtpReader::new(datagram).map_err(|error| match error {
            rtp_rs::RtpReaderError::BufferTooShort(length) => PacketError::TooShort { length },
            rtp_rs::RtpReaderError::UnsupportedVersion(version) => {
                PacketError::UnsupportedVersion { version }
            }
            rtp_rs::RtpReaderError::HeadersTruncated { header_len, .. } => {
                PacketError::HeaderTruncated {
                    header_length: header_len,
                }
            }
            rtp_rs::RtpReaderError::PaddingLengthInvalid(padding) => {
                PacketError::InvalidPadding { padding }
            }
        })?;
        Ok(Self {
            header: Header {
                payload_type: PayloadType(reader.payload_type()),
                marker: reader.mark(),
                sequence: SeqNo(u16::from(reader.sequence_number())),
                timestamp: RtpTimestamp(reader.timestamp()),
                ssrc: Ssrc(reader.ssrc()),
            },
            payload: reader.payload(),
        })
    }
}

/// Whether a datagram on a port that multiplexes RTP and RTCP is RTCP. RFC 5761 §4: the
/// second octet of an RTCP packet is its packet type, and types 192–223 fall where an RTP
/// marker bit meets payload types 64–95, which are therefore never used for RTP there.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram
        .get(1)
        .is_some_and(|kind| (192..=223).contains(kind))
}

/// Writes `header` and `payload` as one RTP packet into `buffer`, replacing its contents, and
/// returns the packet's length. The buffer keeps its capacity, so a sender reuses one buffer
/// for every packet.
pub fn write(header: &Header, payload: &[u8], buffer: &mut Vec<u8>) -> usize {
    buffer.clear();
    // RFC 3550 §5.1: V=2, P=0, X=0, CC=0; then M and the 7-bit PT; then sequence, timestamp
    // and SSRC in network byte order.
    buffer.push(0x80);
    buffer.push((u8::from(header.marker) << 7) | (header.payload_type.0 & 0x7F));
    buffer.extend_from_slice(&header.sequence.0.to_be_bytes());
    buffer.extend_from_slice(&header.timestamp.0.to_be_bytes());
    buffer.extend_from_slice(&header.ssrc.0.to_be_bytes());
    buffer.extend_from_slice(payload);
    buffer.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            payload_type: PayloadType(8),
            marker: true,
            sequence: SeqNo(0xFFFE),
            timestamp: RtpTimestamp(0xDEAD_BEEF),
            ssrc: Ssrc(0x0102_0304),
        }
    }

    #[test]
    fn written_packets_parse_back_to_the_same_fields() {
        let mut buffer = Vec::new();
        let length = write(&header(), &[1, 2, 3], &mut buffer);
        assert_eq!(length, 15);
        assert_eq!(&buffer[..4], &[0x80, 0x88, 0xFF, 0xFE]);
        let packet = Packet::parse(&buffer).unwrap();
        assert_eq!(packet.header, header());
        assert_eq!(packet.payload, &[1, 2, 3]);
    }

    #[test]
    fn csrcs_extension_and_padding_are_stripped_from_the_payload() {
        // V=2 P=1 X=1 CC=1, PT 0, one CSRC, a one-word extension, payload [9, 9], 2 bytes pad.
        let mut datagram = vec![0xB1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        datagram.extend_from_slice(&[0, 0, 0, 4]);
        datagram.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]);
        datagram.extend_from_slice(&[9, 9, 0, 2]);
        let packet = Packet::parse(&datagram).unwrap();
        assert_eq!(packet.payload, &[9, 9]);
        assert_eq!(packet.header.ssrc, Ssrc(3));
    }

    #[test]
    fn malformed_datagrams_are_typed_errors() {
        assert_eq!(
            Packet::parse(&[0x80; 5]),
            Err(PacketError::TooShort { length: 5 })
        );
        assert_eq!(
            Packet::parse(&[0x40; 12]),
            Err(PacketError::UnsupportedVersion { version: 1 })
        );
        let mut truncated = [0u8; 12];
        truncated[0] = 0x82; // two CSRCs announced, none present
        assert!(matches!(
            Packet::parse(&truncated),
            Err(PacketError::HeaderTruncated { .. })
        ));
        let mut padded = [0u8; 13];
        padded[0] = 0xA0;
        padded[12] = 9; // padding longer than the packet body
        assert!(matches!(
            Packet::parse(&padded),
            Err(PacketError::InvalidPadding { padding: 9 })
        ));
        assert!(matches!(
            Packet::parse(&vec![0x80; MAX_PACKET_LEN + 1]),
            Err(PacketError::TooLong { .. })
        ));
    }
}
