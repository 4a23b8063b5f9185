//! RTP (RFC 3550) for G.711 audio: identifiers, packet parsing and building, receive-side
//! statistics, send-side stamping, symmetric-RTP latching, and the two tokio shells that move
//! packets: the [`relay`] between two call legs, the paced prompt [`player`] and the DTMF
//! [`listener`] of a leg that is not bridged.
//!
//! Invariant: [`packet`], [`source`], [`sender`], [`latch`], [`forward`], [`rtcp`] and
//! [`control`] are sans-IO: they take bytes and `now: Instant` and return bytes and
//! verdicts. Only [`relay`],
//! [`player`] and [`listener`] own sockets and timers, and they are thin loops around those cores. SDP is
//! in [`crate::sdp`], the port pool in [`crate::ports`], DTMF events in [`crate::dtmf`].

pub mod control;
pub mod forward;
pub mod latch;
pub mod listener;
pub mod packet;
pub mod player;
pub mod relay;
pub mod rtcp;
pub mod sender;
pub mod source;

pub use packet::{Header, Packet, PacketError};
pub use sender::Sender;
pub use source::{SourceState, Statistics, Verdict};

/// Synchronisation source identifier (RFC 3550 §5.1): names one stream of packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

impl Ssrc {
    /// A random SSRC. RFC 3550 §8.1: "the SSRC identifier is chosen randomly" so that two
    /// sources in one session are unlikely to collide.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

/// A 16-bit RTP sequence number (RFC 3550 §5.1), which wraps from 65,535 to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqNo(pub u16);

impl SeqNo {
    /// A random initial sequence number. RFC 3550 §5.1: "The initial value of the sequence
    /// number SHOULD be random (unpredictable) to make known-plaintext attacks ... more
    /// difficult."
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The number `count` packets later, wrapping.
    pub fn wrapping_add(self, count: u16) -> Self {
        Self(self.0.wrapping_add(count))
    }
}

/// A 32-bit RTP timestamp (RFC 3550 §5.1) in units of the payload's clock (8,000 Hz for
/// G.711 and telephone-events), which wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpTimestamp(pub u32);

impl RtpTimestamp {
    /// A random initial timestamp (RFC 3550 §5.1: "The initial value of the timestamp SHOULD be
    /// random").
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The timestamp `ticks` clock ticks later, wrapping.
    pub fn wrapping_add(self, ticks: u32) -> Self {
        Self(self.0.wrapping_add(ticks))
    }
}

/// An RTP payload type number (RFC 3550 §5.1: 7 bits; RFC 3551 §6 assigns the static ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadType(pub u8);

impl PayloadType {
    /// RFC 3551 Table 4: PCMU (G.711 µ-law), 8 kHz.
    pub const PCMU: Self = Self(0);
    /// RFC 3551 Table 4: PCMA (G.711 A-law), 8 kHz.
    pub const PCMA: Self = Self(8);
    /// The dynamic payload type Tandem offers for telephone-events when it makes the offer
    /// (RFC 3551 §3: 96–127 are dynamic); an answerer keeps whatever the offer chose.
    pub const TELEPHONE_EVENT_DEFAULT: Self = Self(101);
}

/// The audio codecs Tandem speaks on the wire: the two laws of G.711 (RFC 3551 §4.5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, the encoding name "PCMU".
    Pcmu,
    /// G.711 A-law, the encoding name "PCMA".
    Pcma,
}

impl Codec {
    /// The static payload type RFC 3551 Table 4 assigns.
    pub fn static_payload_type(self) -> PayloadType {
        match self {
            Self::Pcmu => PayloadType::PCMU,
            Self::Pcma => PayloadType::PCMA,
        }
    }

    /// The encoding name used in SDP `a=rtpmap` (RFC 3551 Table 4).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    /// The octet that encodes silence: µ-law's +0 (0xFF) or A-law's smallest positive value
    /// (0xD5).
    pub fn silence(self) -> u8 {
        match self {
            Self::Pcmu => 0xFF,
            Self::Pcma => 0xD5,
        }
    }
}

/// The RTP clock rate of G.711 and of telephone-events at 8 kHz (RFC 3551 §4.5.14,
/// RFC 4733 §2.1).
pub const CLOCK_RATE: u32 = 8_000;

/// Samples (= timestamp ticks and payload octets) in one 20 ms G.711 packet, the default
/// packetisation (RFC 3551 §4.5: "the default packetization interval ... 20 ms").
pub const SAMPLES_PER_PACKET: u32 = 160;

/// The packetisation interval Tandem sends at.
pub const PACKET_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);
