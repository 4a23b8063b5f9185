//! DTMF as RTP telephone-events (RFC 4733): the 4-octet event payload, a sender that turns one
//! key press into its sequence of packets, and a receiver that reports each key press once.
//!
//! Sans-IO: the sender yields payloads one packet interval at a time and the caller stamps and
//! sends them (all packets of one event share the event's start timestamp, §2.5.1.2); the
//! receiver takes payloads and timestamps.

use crate::rtp::packet::Header;
use crate::rtp::{PayloadType, RtpTimestamp, Sender, SAMPLES_PER_PACKET};

/// Length of a telephone-event payload (RFC 4733 §2.3).
pub const PAYLOAD_LEN: usize = 4;

/// How many times the final (E bit) packet is sent. RFC 4733 §2.5.1.4: "the final packet for
/// each event and for each segment SHOULD be sent a total of three times".
pub const END_REPETITIONS: u8 = 3;

/// A DTMF event code (RFC 4733 §3.2, Table 7): 0–9, * (10), # (11), A–D (12–15), flash (16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event(pub u8);

impl Event {
    /// The event for a key: `0`–`9`, `*`, `#`, `A`–`D` (either case).
    pub fn from_key(key: char) -> Option<Self> {
        let code = match key {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => key as u8 - b'A' + 12,
            'a'..='d' => key as u8 - b'a' + 12,
            _ => return None,
        };
        Some(Self(code))
    }

    /// The key of a DTMF event, or `None` for flash and non-DTMF events.
    pub fn key(self) -> Option<char> {
        match self.0 {
            0..=9 => Some(char::from(b'0' + self.0)),
            10 => Some('*'),
            11 => Some('#'),
            12..=15 => Some(char::from(b'A' + self.0 - 12)),
            _ => None,
        }
    }
}

/// Why a telephone-event payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// Shorter than four octets.
    #[error("telephone-event payload of {length} bytes is shorter than 4")]
    TooShort {
        /// The payload's length.
        length: usize,
    },
}

/// A telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// The event.
    pub event: Event,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level in −dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl EventPayload {
    /// The four octets on the wire.
    pub fn encode(&self) -> [u8; PAYLOAD_LEN] {
        let [high, low] = self.duration.to_be_bytes();
        // RFC 4733 §2.3: E (1 bit), R (1 bit, zero), volume (6 bits).
        let flags = (u8::from(self.end) << 7) | (self.volume & 0x3F);
        [self.event.0, flags, high, low]
    }

    /// Reads a payload; extra octets (redundant events, RFC 4733 §2.5.1.3 with RFC 2198, which
    /// we do not negotiate) are ignored.
    pub fn decode(payload: &[u8]) -> Result<Self, DtmfError> {
        let [event, flags, high, low, ..] = *payload else {
            return Err(DtmfError::TooShort {
                length: payload.len(),
            });
        };
        Ok(Self {
            event: Event(event),
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([high, low]),
        })
    }
}

/// Produces the packets of one event, one per packet interval (20 ms): updates with growing
/// duration, then the end packet [`END_REPETITIONS`] times.
#[derive(Debug, Clone)]
pub struct EventSender {
    event: Event,
    volume: u8,
    total: u16,
    sent: u16,
    ends_left: u8,
    started: bool,
}

impl EventSender {
    /// An event lasting `duration_samples` timestamp units (e.g. 800 = 100 ms at 8 kHz) at
    /// `volume` −dBm0. Durations are capped at 65,535 (RFC 4733 §2.5.2.3 would split longer
    /// events into segments; key presses never need it).
    pub fn new(event: Event, duration_samples: u32, volume: u8) -> Self {
        Self {
            event,
            volume: volume.min(63),
            total: duration_samples.clamp(1, u32::from(u16::MAX)) as u16,
            sent: 0,
            ends_left: END_REPETITIONS,
            started: false,
        }
    }

    /// The next packet's payload and marker bit, or `None` when the event is fully sent.
    /// RFC 4733 §2.5.1.2: the first packet of an event carries the marker bit.
    pub fn next_payload(&mut self) -> Option<(bool, EventPayload)> {
        let marker = !std::mem::replace(&mut self.started, true);
        if self.sent < self.total {
            self.sent = self
                .sent
                .saturating_add(SAMPLES_PER_PACKET as u16)
                .min(self.total);
            if self.sent < self.total {
                return Some((marker, self.payload(false)));
            }
        }
        if self.ends_left == 0 {
            return None;
        }
        self.ends_left -= 1;
        Some((marker, self.payload(true)))
    }

    fn payload(&self, end: bool) -> EventPayload {
        EventPayload {
            event: self.event,
            end,
            volume: self.volume,
            duration: self.sent,
        }
    }
}

impl Sender {
    /// The header for a packet of a telephone-event that started at `start` (all packets of
    /// one event carry its start timestamp, RFC 4733 §2.5.1.2); the sequence number advances,
    /// the timestamp of later audio does not move. Call [`Sender::start_talkspurt`] with the
    /// event's duration afterwards so audio resumes at the right timestamp.
    pub fn stamp_event(
        &mut self,
        payload_type: PayloadType,
        start: RtpTimestamp,
        marker: bool,
    ) -> Header {
        let mut header = self.stamp(payload_type, 0, PAYLOAD_LEN);
        header.timestamp = start;
        header.marker = marker;
        header
    }
}

/// A key press reported by [`EventReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The event.
    pub event: Event,
    /// The event's start timestamp (its identity within the stream).
    pub start: RtpTimestamp,
}

/// Reports each event once, however many of its packets (updates, three end packets,
/// retransmissions) arrive: an event is identified by its RTP timestamp (RFC 4733 §2.5.2.2:
/// "a new event ... is identified by a different timestamp").
#[derive(Debug, Clone, Default)]
pub struct EventReceiver {
    last_start: Option<RtpTimestamp>,
}

impl EventReceiver {
    /// A receiver that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one telephone-event packet's timestamp and payload; returns the event the first
    /// time its timestamp is seen.
    pub fn handle_payload(
        &mut self,
        timestamp: RtpTimestamp,
        payload: &[u8],
    ) -> Result<Option<Received>, DtmfError> {
        let payload = EventPayload::decode(payload)?;
        if self.last_start == Some(timestamp) {
            return Ok(None);
        }
        self.last_start = Some(timestamp);
        Ok(Some(Received {
            event: payload.event,
            start: timestamp,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_rfc_4733_event_codes_and_back() {
        for (key, code) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('D', 15),
        ] {
            assert_eq!(Event::from_key(key), Some(Event(code)));
            assert_eq!(Event(code).key(), Some(key));
        }
        assert_eq!(Event::from_key('d'), Some(Event(15)));
        assert_eq!(Event::from_key('x'), None);
        assert_eq!(Event(16).key(), None);
    }

    #[test]
    fn payloads_round_trip_and_short_ones_are_errors() {
        let payload = EventPayload {
            event: Event(11),
            end: true,
            volume: 10,
            duration: 0x0320,
        };
        assert_eq!(payload.encode(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(EventPayload::decode(&payload.encode()), Ok(payload));
        assert_eq!(
            EventPayload::decode(&[1, 2]),
            Err(DtmfError::TooShort { length: 2 })
        );
    }

    #[test]
    fn an_event_is_updates_then_three_end_packets_with_the_final_duration() {
        let mut sender = EventSender::new(Event(5), 800, 10);
        let mut packets = Vec::new();
        while let Some(packet) = sender.next_payload() {
            packets.push(packet);
        }
        let durations: Vec<(bool, bool, u16)> = packets
            .iter()
            .map(|(marker, payload)| (*marker, payload.end, payload.duration))
            .collect();
        assert_eq!(
            durations,
            [
                (true, false, 160),
                (false, false, 320),
                (false, false, 480),
                (false, false, 640),
                (false, true, 800),
                (false, true, 800),
                (false, true, 800),
            ]
        );
    }

    #[test]
    fn the_receiver_reports_each_event_once() {
        let mut receiver = EventReceiver::new();
        let update = EventPayload {
            event: Event(1),
            end: false,
            volume: 10,
            duration: 160,
        }
        .encode();
        let end = EventPayload {
            end: true,
            duration: 800,
            ..EventPayload::decode(&update).unwrap()
        }
        .encode();
        let first = receiver
            .handle_payload(RtpTimestamp(1_000), &update)
            .unwrap();
        assert_eq!(
            first,
            Some(Received {
                event: Event(1),
                start: RtpTimestamp(1_000)
            })
        );
        for _ in 0..3 {
            assert_eq!(receiver.handle_payload(RtpTimestamp(1_000), &end), Ok(None));
        }
        // The same key again is a new event: a new timestamp.
        assert!(receiver
            .handle_payload(RtpTimestamp(3_000), &end)
            .unwrap()
            .is_some());
    }
}
