//! One direction of a relay, sans-IO: takes a datagram received on one leg and produces the
//! datagram to send on the other, or says why it was dropped.
//!
//! Audio in the incoming leg's negotiated codec is passed through byte for byte when both legs
//! use the same codec and transcoded µ-law ↔ A-law by table look-up when not (G.711 both ways,
//! so no linear PCM in between). Telephone-events (RFC 4733) are passed as telephone-events
//! with the payload type mapped to the one the outgoing leg negotiated. Header fields are
//! rewritten by the outgoing leg's [`Sender`] so each peer sees one continuous stream with
//! Tandem's SSRC. Anything else (comfort noise, codecs nobody negotiated) is dropped.

use std::time::Instant;

use super::packet::{self, Packet, PacketError};
use super::source::SourceState;
use super::{Codec, PayloadType, Sender, CLOCK_RATE};
use crate::codec;

/// What one leg negotiated in SDP: its codec, that codec's payload type, and the
/// telephone-event payload type if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegFormat {
    /// The audio codec.
    pub codec: Codec,
    /// The payload type the codec goes by on this leg.
    pub payload_type: PayloadType,
    /// The telephone-event payload type on this leg, if negotiated.
    pub telephone_event: Option<PayloadType>,
}

impl From<&crate::sdp::Negotiated> for LegFormat {
    /// The format a leg settled on in offer/answer.
    fn from(negotiated: &crate::sdp::Negotiated) -> Self {
        Self {
            codec: negotiated.codec,
            payload_type: negotiated.payload_type,
            telephone_event: negotiated.telephone_event,
        }
    }
}

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not a valid RTP packet.
    Malformed(PacketError),
    /// A payload type the incoming leg did not negotiate.
    UnexpectedPayloadType(PayloadType),
    /// A telephone-event, but the outgoing leg did not negotiate telephone-events.
    NoTelephoneEventOnOutgoingLeg,
}

/// Forwards the packets of one direction.
#[derive(Debug)]
pub struct Forwarder {
    incoming: LegFormat,
    outgoing: LegFormat,
    sender: Sender,
    source: Option<SourceState>,
    scratch: Vec<u8>,
}

impl Forwarder {
    /// A forwarder from a leg with format `incoming` to a leg with format `outgoing`,
    /// stamping with `sender`.
    pub fn new(incoming: LegFormat, outgoing: LegFormat, sender: Sender) -> Self {
        Self {
            incoming,
            outgoing,
            sender,
            source: None,
            scratch: Vec::with_capacity(packet::MAX_PACKET_LEN),
        }
    }

    /// Turns `datagram`, received at `now`, into the packet for the other leg, written into
    /// `out`; returns its length.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, Dropped> {
        let packet = Packet::parse(datagram).map_err(Dropped::Malformed)?;
        let header = packet.header;
        let (payload_type, samples, payload): (PayloadType, u32, &[u8]) =
            if header.payload_type == self.incoming.payload_type {
                let samples = packet.payload.len() as u32;
                let payload = if self.incoming.codec == self.outgoing.codec {
                    packet.payload
                } else {
                    self.scratch.resize(packet.payload.len(), 0);
                    match self.incoming.codec {
                        Codec::Pcmu => codec::ulaw_to_alaw(packet.payload, &mut self.scratch),
                        Codec::Pcma => codec::alaw_to_ulaw(packet.payload, &mut self.scratch),
                    };
                    &self.scratch
                };
                (self.outgoing.payload_type, samples, payload)
            } else if Some(header.payload_type) == self.incoming.telephone_event {
                // RFC 4733 §2.1: an event's packets share the event's start timestamp and the
                // duration lives in the payload, so the packet itself spans no samples.
                let Some(payload_type) = self.outgoing.telephone_event else {
                    return Err(Dropped::NoTelephoneEventOnOutgoingLeg);
                };
                (payload_type, 0, packet.payload)
            } else {
                return Err(Dropped::UnexpectedPayloadType(header.payload_type));
            };
        // Statistics of the incoming stream, one state per SSRC (a new SSRC starts afresh).
        let source = match &mut self.source {
            Some(source) if source.ssrc() == header.ssrc => source,
            slot => slot.insert(SourceState::new(header.ssrc, CLOCK_RATE, 0, now)),
        };
        source.handle_packet(now, header.sequence, header.timestamp);
        let outgoing = self
            .sender
            .forward(&header, payload_type, samples, payload.len());
        Ok(packet::write(&outgoing, payload, out))
    }

    /// Statistics of the current incoming source, if any packet has arrived.
    pub fn incoming_source(&self) -> Option<&SourceState> {
        self.source.as_ref()
    }

    /// The same, mutable: an RTCP report takes the source's loss interval (RFC 3550 A.3).
    pub fn incoming_source_mut(&mut self) -> Option<&mut SourceState> {
        self.source.as_mut()
    }

    /// The outgoing stream's sender (SSRC, counts).
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// The same, mutable: packets Tandem generates into the outgoing stream (telephone-events
    /// on behalf of the other party) take their numbers from it.
    pub fn sender_mut(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// What the outgoing leg negotiated.
    pub fn outgoing(&self) -> LegFormat {
        self.outgoing
    }

    /// The incoming leg negotiated again (RFC 3264 §8): its packets are read as `format` from
    /// the next one on. Packets still in the old format are dropped as unexpected.
    pub fn set_incoming(&mut self, format: LegFormat) {
        self.incoming = format;
    }

    /// The outgoing leg negotiated again: packets toward it are written as `format` from the
    /// next one on, in the same stream (RFC 3550 §5.1: "An RTP source MAY change the payload
    /// type during a session"), so its SSRC and numbering go on.
    pub fn set_outgoing(&mut self, format: LegFormat) {
        self.outgoing = format;
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::Header;
    use super::super::{RtpTimestamp, SeqNo, Ssrc};
    use super::*;

    fn pcmu() -> LegFormat {
        LegFormat {
            codec: Codec::Pcmu,
            payload_type: PayloadType::PCMU,
            telephone_event: Some(PayloadType(101)),
        }
    }

    fn pcma() -> LegFormat {
        LegFormat {
            codec: Codec::Pcma,
            payload_type: PayloadType::PCMA,
            telephone_event: Some(PayloadType(96)),
        }
    }

    fn datagram(payload_type: u8, payload: &[u8]) -> Vec<u8> {
        let header = Header {
            payload_type: PayloadType(payload_type),
            marker: false,
            sequence: SeqNo(5),
            timestamp: RtpTimestamp(800),
            ssrc: Ssrc(77),
        };
        let mut buffer = Vec::new();
        packet::write(&header, payload, &mut buffer);
        buffer
    }

    #[test]
    fn audio_is_transcoded_and_events_are_mapped_between_payload_types() {
        let now = Instant::now();
        let sender = Sender::new(Ssrc(1), SeqNo(0), RtpTimestamp(0));
        let mut forwarder = Forwarder::new(pcmu(), pcma(), sender);
        let ulaw: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        forwarder
            .handle_datagram(now, &datagram(0, &ulaw), &mut out)
            .unwrap();
        let packet = Packet::parse(&out).unwrap();
        assert_eq!(packet.header.payload_type, PayloadType::PCMA);
        assert_eq!(packet.header.ssrc, Ssrc(1));
        let expected: Vec<u8> = ulaw.iter().map(|&c| codec::ulaw_to_alaw_code(c)).collect();
        assert_eq!(packet.payload, expected.as_slice());

        let event = [5, 0x0A, 0, 160];
        forwarder
            .handle_datagram(now, &datagram(101, &event), &mut out)
            .unwrap();
        let packet = Packet::parse(&out).unwrap();
        assert_eq!(packet.header.payload_type, PayloadType(96));
        assert_eq!(packet.payload, &event);

        assert_eq!(
            forwarder.handle_datagram(now, &datagram(13, &[0]), &mut out),
            Err(Dropped::UnexpectedPayloadType(PayloadType(13)))
        );
        assert!(matches!(
            forwarder.handle_datagram(now, &[1, 2, 3], &mut out),
            Err(Dropped::Malformed(_))
        ));
        assert_eq!(
            forwarder.incoming_source().unwrap().statistics().received,
            2
        );
    }

    #[test]
    fn matching_codecs_pass_the_payload_through_untouched() {
        let now = Instant::now();
        let mut forwarder = Forwarder::new(pcma(), pcma(), Sender::random());
        let alaw: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let mut out = Vec::new();
        forwarder
            .handle_datagram(now, &datagram(8, &alaw), &mut out)
            .unwrap();
        assert_eq!(Packet::parse(&out).unwrap().payload, alaw.as_slice());
        let without_events = LegFormat {
            telephone_event: None,
            ..pcma()
        };
        let mut forwarder = Forwarder::new(pcma(), without_events, Sender::random());
        assert_eq!(
            forwarder.handle_datagram(now, &datagram(96, &[1, 0, 0, 0]), &mut out),
            Err(Dropped::NoTelephoneEventOnOutgoingLeg)
        );
    }

    #[test]
    fn a_renegotiated_leg_is_read_and_written_in_its_new_format_in_the_same_stream() {
        let now = Instant::now();
        let mut forwarder = Forwarder::new(pcmu(), pcmu(), Sender::random());
        let mut out = Vec::new();
        forwarder
            .handle_datagram(now, &datagram(0, &[0x11; 160]), &mut out)
            .unwrap();
        let before = Packet::parse(&out).unwrap().header;

        // The incoming leg switched to PCMA: its A-law is transcoded, its old µ-law refused.
        forwarder.set_incoming(pcma());
        let alaw: Vec<u8> = (0..=255).collect();
        forwarder
            .handle_datagram(now, &datagram(8, &alaw), &mut out)
            .unwrap();
        let packet = Packet::parse(&out).unwrap();
        assert_eq!(packet.header.payload_type, PayloadType::PCMU);
        let expected: Vec<u8> = alaw.iter().map(|&c| codec::alaw_to_ulaw_code(c)).collect();
        assert_eq!(packet.payload, expected.as_slice());
        assert_eq!(
            forwarder.handle_datagram(now, &datagram(0, &[0x11; 160]), &mut out),
            Err(Dropped::UnexpectedPayloadType(PayloadType::PCMU))
        );

        // The outgoing leg switched too: A-law passes through, events take its payload type,
        // and the stream goes on under the same SSRC.
        let outgoing = LegFormat {
            telephone_event: Some(PayloadType(110)),
            ..pcma()
        };
        forwarder.set_outgoing(outgoing);
        assert_eq!(forwarder.outgoing(), outgoing);
        forwarder
            .handle_datagram(now, &datagram(8, &alaw), &mut out)
            .unwrap();
        let packet = Packet::parse(&out).unwrap();
        assert_eq!(packet.header.payload_type, PayloadType::PCMA);
        assert_eq!(packet.payload, alaw.as_slice());
        assert_eq!(packet.header.ssrc, before.ssrc);
        forwarder
            .handle_datagram(now, &datagram(96, &[1, 0, 0, 0]), &mut out)
            .unwrap();
        assert_eq!(
            Packet::parse(&out).unwrap().header.payload_type,
            PayloadType(110)
        );
    }
}
