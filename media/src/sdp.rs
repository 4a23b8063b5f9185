//! SDP (RFC 4566) for plain audio calls and the offer/answer rules of RFC 3264, hand-written
//! and small: one usable `m=audio` stream over `RTP/AVP` with PCMU, PCMA and telephone-events.
//!
//! Parsing is bounded ([`MAX_SDP_LEN`], [`MAX_LINES`], [`MAX_MEDIA`], [`MAX_FORMATS`]) and
//! lenient where RFC 4566 §5 asks for it: LF line ends are accepted as well as CRLF, unknown
//! line types and attributes are ignored. Every failure is a typed [`SdpError`]; the caller
//! answers an offer it cannot use with 488 Not Acceptable Here (RFC 3261 §13.3.1.1).

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use compact_str::{CompactString, ToCompactString};

use crate::rtp::{Codec, PayloadType, CLOCK_RATE};

/// The largest SDP body accepted, in bytes. Real audio offers are well under 2 KB.
pub const MAX_SDP_LEN: usize = 16 * 1024;
/// The most lines accepted.
pub const MAX_LINES: usize = 256;
/// The most `m=` lines accepted.
pub const MAX_MEDIA: usize = 8;
/// The most formats (payload types) accepted on one `m=` line.
pub const MAX_FORMATS: usize = 32;
/// The telephone-event range Tandem offers and answers (RFC 4733 §3.2: DTMF digits 0–9, *,
/// #, A–D and flash).
pub const TELEPHONE_EVENTS: &str = "0-16";
/// Packetisation time Tandem offers and sends, in milliseconds.
pub const PTIME_MILLISECONDS: u32 = 20;

/// Why an SDP body could not be parsed or answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is longer than [`MAX_SDP_LEN`].
    #[error("SDP of {length} bytes exceeds {MAX_SDP_LEN}")]
    TooLong {
        /// The body's length.
        length: usize,
    },
    /// More lines, media or formats than the bounds allow.
    #[error("SDP has too many {what}")]
    TooMany {
        /// Which bound was exceeded: "lines", "media" or "formats".
        what: &'static str,
    },
    /// The body is not UTF-8 text.
    #[error("SDP is not UTF-8")]
    NotText,
    /// A line is not `<letter>=<value>`.
    #[error("SDP line {line} is not of the form x=value")]
    MalformedLine {
        /// The 1-based line number.
        line: usize,
    },
    /// The first line is not `v=0`.
    #[error("SDP does not start with v=0")]
    UnsupportedVersion,
    /// A required line (`o=`) is missing.
    #[error("SDP lacks its {0}= line")]
    MissingLine(char),
    /// A field of a line could not be parsed.
    #[error("SDP line {line}: bad {field}")]
    BadField {
        /// The 1-based line number.
        line: usize,
        /// The field that was wrong.
        field: &'static str,
    },
    /// A connection address is not an IPv4/IPv6 literal (FQDNs are not resolved).
    #[error("SDP line {line}: connection address is not an IP address")]
    UnsupportedAddress {
        /// The 1-based line number.
        line: usize,
    },
    /// No active `m=audio` stream over `RTP/AVP`.
    #[error("SDP has no active RTP/AVP audio stream")]
    NoAudioStream,
    /// The audio stream offers no codec we support.
    #[error("SDP audio stream offers no supported codec")]
    NoCommonCodec,
    /// The audio stream has no connection address at media or session level.
    #[error("SDP audio stream has no connection address")]
    NoConnectionAddress,
    /// The answer rejected our audio stream (port 0).
    #[error("SDP answer rejected the audio stream")]
    AudioRejected,
}

/// Media direction attributes (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`, the default.
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The direction an answer takes (RFC 3264 §6.1): sendonly ↔ recvonly, the others kept.
    pub fn answered(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    /// The attribute name.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// Whether we send media in this direction.
    pub fn is_sending(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether we receive media in this direction.
    pub fn is_receiving(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// An `a=rtpmap` attribute (RFC 4566 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type it describes.
    pub payload_type: PayloadType,
    /// The encoding name, e.g. "PCMU" or "telephone-event".
    pub encoding: CompactString,
    /// The clock rate in Hz.
    pub clock_rate: u32,
    /// The channel count, if given.
    pub channels: Option<u8>,
}

/// The `o=` line (RFC 4566 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The user name, "-" when there is none.
    pub username: CompactString,
    /// The session id.
    pub session_id: u64,
    /// The session version, incremented on each change (RFC 3264 §8).
    pub session_version: u64,
    /// The originating host's address.
    pub address: IpAddr,
}

impl Origin {
    /// The origin of the next description sent in the same session: this one, with the
    /// version incremented by one if the description `changed` and kept if it is identical
    /// (RFC 3264 §8).
    pub fn next(&self, changed: bool) -> Origin {
        let session_version = if changed {
            // Ours start below 2^32 and grow by one per change, so they never get near the
            // end; one that does (parsed from a peer, say) wraps to 0 rather than panicking.
            self.session_version.wrapping_add(1)
        } else {
            self.session_version
        };
        Origin {
            session_version,
            ..self.clone()
        }
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The media type, e.g. "audio" or "video".
    pub kind: CompactString,
    /// The transport port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// The transport protocol, e.g. "RTP/AVP".
    pub protocol: CompactString,
    /// The format list as written (payload type numbers for RTP).
    pub formats: Vec<CompactString>,
    /// A media-level `c=` address.
    pub connection: Option<IpAddr>,
    /// The `a=rtpmap` attributes.
    pub rtpmaps: Vec<RtpMap>,
    /// The `a=fmtp` attributes: payload type and parameters.
    pub fmtps: Vec<(PayloadType, String)>,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
    /// A media-level direction attribute.
    pub direction: Option<Direction>,
    /// `a=rtcp` (RFC 3605): where the stream's RTCP goes when not to RTP port + 1.
    pub rtcp: Option<RtcpAttribute>,
    /// `a=rtcp-mux` (RFC 5761 §5.1.1): RTCP shares the RTP port, in an offer if the answerer
    /// agrees, in an answer as agreed.
    pub rtcp_mux: bool,
}

/// An `a=rtcp` attribute (RFC 3605 §2.1): `a=rtcp:<port> [IN IP4|IP6 <address>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpAttribute {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, when it differs from the stream's connection address.
    pub address: Option<IpAddr>,
}

impl Media {
    /// Where this stream's RTCP goes, given the stream's RTP address and whether RTCP is
    /// multiplexed: the RTP address if it is, else `a=rtcp` if present, else RFC 3550 §11's
    /// RTP port + 1 on the same address.
    pub fn rtcp_address(&self, rtp: SocketAddr, muxed: bool) -> SocketAddr {
        if muxed {
            return rtp;
        }
        match self.rtcp {
            Some(attribute) => {
                SocketAddr::new(attribute.address.unwrap_or(rtp.ip()), attribute.port)
            }
            None => SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)),
        }
    }
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line ("-" when empty).
    pub name: CompactString,
    /// A session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// A session-level direction attribute.
    pub direction: Option<Direction>,
    /// The `m=` sections in order.
    pub media: Vec<Media>,
}

/// What offer/answer settled for the audio stream, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec to send and expect.
    pub codec: Codec,
    /// The codec's payload type in this session.
    pub payload_type: PayloadType,
    /// The telephone-event payload type, if both sides have it.
    pub telephone_event: Option<PayloadType>,
    /// Where the peer wants to receive RTP.
    pub remote: SocketAddr,
    /// Where the peer wants to receive RTCP: its RTP address when RTCP is multiplexed, else
    /// its `a=rtcp` (RFC 3605), else RTP port + 1 (RFC 3550 §11).
    pub remote_rtcp: SocketAddr,
    /// Whether RTCP is multiplexed on the RTP ports (RFC 5761): both sides said so.
    pub rtcp_mux: bool,
    /// Our direction.
    pub direction: Direction,
    /// The peer's `a=ptime`, if given, in milliseconds.
    pub ptime: Option<u32>,
}

/// An answer to an offer: the SDP to send back and what it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer's session description.
    pub session: Session,
    /// The negotiated audio stream.
    pub negotiated: Negotiated,
}

/// Builds an offer for one audio stream received at `local`, listing `codecs` in order of
/// preference plus telephone-events on [`PayloadType::TELEPHONE_EVENT_DEFAULT`], and offering
/// RTCP multiplexed on the RTP port (RFC 5761 §5.1.1; an answerer that does not know the
/// attribute ignores it and RTCP stays on RTP port + 1).
pub fn offer(local: SocketAddr, codecs: &[Codec], session_id: u64) -> Session {
    Session {
        origin: Origin {
            username: CompactString::const_new("-"),
            session_id,
            session_version: session_id,
            address: local.ip(),
        },
        name: CompactString::const_new("-"),
        connection: Some(local.ip()),
        direction: None,
        media: vec![audio_media(
            local.port(),
            codecs
                .iter()
                .map(|&codec| (codec, codec.static_payload_type())),
            Some(PayloadType::TELEPHONE_EVENT_DEFAULT),
            Direction::SendRecv,
            true,
        )],
    }
}

/// Answers `offer` for audio received at `local` (RFC 3264 §6): the first offered codec that
/// is in `supported`, under the offer's payload type; the offer's telephone-event payload type
/// if it has one; the mirrored direction; RTCP multiplexing if offered and `rtcp_mux` allows it
/// (RFC 5761 §5.1.1: the answer repeats `a=rtcp-mux` to agree). Other `m=` lines are rejected
/// with port 0 in place, so the answer has as many as the offer (§6). No usable audio stream
/// or codec is an error.
pub fn answer(
    offer: &Session,
    local: SocketAddr,
    supported: &[Codec],
    rtcp_mux: bool,
) -> Result<Answer, SdpError> {
    let index = offer
        .media
        .iter()
        .position(is_active_audio)
        .ok_or(SdpError::NoAudioStream)?;
    let offered = &offer.media[index];
    let (codec, payload_type) = offered
        .codecs()
        .find(|(codec, _)| supported.contains(codec))
        .ok_or(SdpError::NoCommonCodec)?;
    let telephone_event = offered.telephone_event();
    let remote_ip = offered
        .connection
        .or(offer.connection)
        .ok_or(SdpError::NoConnectionAddress)?;
    let direction = offered
        .direction
        .or(offer.direction)
        .unwrap_or(Direction::SendRecv)
        .answered();
    let rtcp_mux = rtcp_mux && offered.rtcp_mux;
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(position, media)| {
            if position == index {
                audio_media(
                    local.port(),
                    std::iter::once((codec, payload_type)),
                    telephone_event,
                    direction,
                    rtcp_mux,
                )
            } else {
                // RFC 3264 §6: "An offered stream MAY be rejected in the answer, for any
                // reason. If a stream is rejected, the offerer and answerer MUST NOT generate
                // media ... the port number in the corresponding stream in the answer MUST be
                // set to zero."
                Media {
                    kind: media.kind.clone(),
                    port: 0,
                    protocol: media.protocol.clone(),
                    formats: media.formats.clone(),
                    connection: None,
                    rtpmaps: Vec::new(),
                    fmtps: Vec::new(),
                    ptime: None,
                    direction: None,
                    rtcp: None,
                    rtcp_mux: false,
                }
            }
        })
        .collect();
    let session_id = rand::random::<u32>().into();
    Ok(Answer {
        session: Session {
            origin: Origin {
                username: CompactString::const_new("-"),
                session_id,
                session_version: session_id,
                address: local.ip(),
            },
            name: CompactString::const_new("-"),
            connection: Some(local.ip()),
            direction: None,
            media,
        },
        negotiated: Negotiated {
            codec,
            payload_type,
            telephone_event,
            remote: SocketAddr::new(remote_ip, offered.port),
            remote_rtcp: offered.rtcp_address(SocketAddr::new(remote_ip, offered.port), rtcp_mux),
            rtcp_mux,
            direction,
            ptime: offered.ptime,
        },
    })
}

/// Reads the answer to an offer we made: the codec is the first format of the answer's audio
/// stream that we offered and support (RFC 3264 §7: the answerer lists what it will use).
pub fn accept_answer(
    offer: &Session,
    answer: &Session,
    supported: &[Codec],
) -> Result<Negotiated, SdpError> {
    let index = offer
        .media
        .iter()
        .position(is_active_audio)
        .ok_or(SdpError::NoAudioStream)?;
    let answered = answer.media.get(index).ok_or(SdpError::NoAudioStream)?;
    if answered.port == 0 {
        return Err(SdpError::AudioRejected);
    }
    if !is_active_audio(answered) {
        return Err(SdpError::NoAudioStream);
    }
    let offered_types: Vec<PayloadType> = offer.media[index].payload_types().collect();
    let (codec, payload_type) = answered
        .codecs()
        .find(|(codec, payload_type)| {
            supported.contains(codec) && offered_types.contains(payload_type)
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let remote_ip = answered
        .connection
        .or(answer.connection)
        .ok_or(SdpError::NoConnectionAddress)?;
    let direction = answered
        .direction
        .or(answer.direction)
        .unwrap_or(Direction::SendRecv)
        .answered();
    let rtcp_mux = offer.media[index].rtcp_mux && answered.rtcp_mux;
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: answered.telephone_event(),
        remote: SocketAddr::new(remote_ip, answered.port),
        remote_rtcp: answered.rtcp_address(SocketAddr::new(remote_ip, answered.port), rtcp_mux),
        rtcp_mux,
        direction,
        ptime: answered.ptime,
    })
}

impl Media {
    /// The formats that are payload type numbers, in order.
    pub fn payload_types(&self) -> impl Iterator<Item = PayloadType> + '_ {
        self.formats
            .iter()
            .filter_map(|format| format.parse::<u8>().ok())
            .filter(|&number| number < 128)
            .map(PayloadType)
    }

    /// The G.711 codecs among the formats, in order, with their payload types: a static type
    /// without an rtpmap means its RFC 3551 codec; an rtpmap names PCMU or PCMA at 8 kHz for
    /// any payload type.
    pub fn codecs(&self) -> impl Iterator<Item = (Codec, PayloadType)> + '_ {
        self.payload_types().filter_map(|payload_type| {
            let codec = match self.rtpmap(payload_type) {
                Some(map) if map.clock_rate == CLOCK_RATE && map.channels.unwrap_or(1) == 1 => {
                    if map.encoding.eq_ignore_ascii_case("PCMU") {
                        Some(Codec::Pcmu)
                    } else if map.encoding.eq_ignore_ascii_case("PCMA") {
                        Some(Codec::Pcma)
                    } else {
                        None
                    }
                }
                Some(_) => None,
                None if payload_type == PayloadType::PCMU => Some(Codec::Pcmu),
                None if payload_type == PayloadType::PCMA => Some(Codec::Pcma),
                None => None,
            };
            codec.map(|codec| (codec, payload_type))
        })
    }

    /// The payload type listed for telephone-events at 8 kHz (RFC 4733 §7.1.1), if any.
    pub fn telephone_event(&self) -> Option<PayloadType> {
        self.payload_types().find(|&payload_type| {
            self.rtpmap(payload_type).is_some_and(|map| {
                map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock_rate == CLOCK_RATE
            })
        })
    }

    /// The rtpmap for a payload type.
    pub fn rtpmap(&self, payload_type: PayloadType) -> Option<&RtpMap> {
        self.rtpmaps
            .iter()
            .find(|map| map.payload_type == payload_type)
    }
}

impl Session {
    /// This description as the successor of `previous`, the last one sent to the same party
    /// in the same dialog: it takes `previous`'s origin, whose version goes up by one exactly
    /// when anything else differs. RFC 3264 §8: "the "o=" line of the new SDP MUST be
    /// identical to that in the previous SDP, except that the version in the origin field
    /// MUST increment by one from the previous SDP. If the version in the origin line does
    /// not increment, the SDP MUST be identical to the SDP with that version number."
    pub fn following(mut self, previous: &Session) -> Session {
        self.origin = previous.origin.clone();
        let changed = self != *previous;
        self.origin = previous.origin.next(changed);
        self
    }

    /// Whether the first active audio stream offers RTCP multiplexed on its RTP port (RFC
    /// 5761 §5.1.1): an answer that agrees needs one local socket for the stream, not two.
    pub fn offers_rtcp_mux(&self) -> bool {
        self.media
            .iter()
            .find(|media| is_active_audio(media))
            .is_some_and(|media| media.rtcp_mux)
    }

    /// Parses an SDP body.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        if body.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLong { length: body.len() });
        }
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
        let mut origin = None;
        let mut session = Session {
            origin: Origin {
                username: CompactString::default(),
                session_id: 0,
                session_version: 0,
                address: IpAddr::from([0, 0, 0, 0]),
            },
            name: CompactString::const_new("-"),
            connection: None,
            direction: None,
            media: Vec::new(),
        };
        let mut lines = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .enumerate()
            .filter(|(_, line)| !line.is_empty());
        let mut count = 0;
        match lines.next() {
            Some((_, "v=0")) => {}
            _ => return Err(SdpError::UnsupportedVersion),
        }
        for (index, line) in lines {
            count += 1;
            if count > MAX_LINES {
                return Err(SdpError::TooMany { what: "lines" });
            }
            let number = index + 1;
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' {
                return Err(SdpError::MalformedLine { line: number });
            }
            let value = &line[2..];
            match (bytes[0], session.media.last_mut()) {
                (b'o', None) => origin = Some(parse_origin(value, number)?),
                (b's', None) => session.name = value.into(),
                (b'c', None) => session.connection = Some(parse_connection(value, number)?),
                (b'c', Some(media)) => media.connection = Some(parse_connection(value, number)?),
                (b'm', _) => {
                    if session.media.len() == MAX_MEDIA {
                        return Err(SdpError::TooMany { what: "media" });
                    }
                    session.media.push(parse_media(value, number)?);
                }
                (b'a', None) => {
                    if let Some(direction) = Direction::from_attribute(value) {
                        session.direction = Some(direction);
                    }
                }
                (b'a', Some(media)) => parse_media_attribute(media, value, number)?,
                // RFC 4566 §5: unknown types are ignored; so are the ones we do not use
                // (i, u, e, p, b, t, r, z, k).
                _ => {}
            }
        }
        session.origin = origin.ok_or(SdpError::MissingLine('o'))?;
        Ok(session)
    }
}

impl Session {
    /// The session as SDP text with CRLF line ends (RFC 4566 §5), written straight into one
    /// string sized for a typical audio description (two per call are written: the formatting
    /// machinery and regrowing cost more than the text).
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(TYPICAL_TEXT_LEN);
        let origin = &self.origin;
        out.push_str("v=0\r\no=");
        out.push_str(&origin.username);
        out.push(' ');
        push_decimal(&mut out, origin.session_id);
        out.push(' ');
        push_decimal(&mut out, origin.session_version);
        push_address(&mut out, " IN ", origin.address);
        out.push_str("\r\ns=");
        out.push_str(&self.name);
        out.push_str("\r\n");
        if let Some(address) = self.connection {
            push_address(&mut out, "c=IN ", address);
            out.push_str("\r\n");
        }
        out.push_str("t=0 0\r\n");
        if let Some(direction) = self.direction {
            push_attribute(&mut out, direction.attribute());
        }
        for media in &self.media {
            out.push_str("m=");
            out.push_str(&media.kind);
            out.push(' ');
            push_decimal(&mut out, media.port.into());
            out.push(' ');
            out.push_str(&media.protocol);
            for format in &media.formats {
                out.push(' ');
                out.push_str(format);
            }
            out.push_str("\r\n");
            if let Some(address) = media.connection {
                push_address(&mut out, "c=IN ", address);
                out.push_str("\r\n");
            }
            for map in &media.rtpmaps {
                out.push_str("a=rtpmap:");
                push_decimal(&mut out, map.payload_type.0.into());
                out.push(' ');
                out.push_str(&map.encoding);
                out.push('/');
                push_decimal(&mut out, map.clock_rate.into());
                if let Some(channels) = map.channels {
                    out.push('/');
                    push_decimal(&mut out, channels.into());
                }
                out.push_str("\r\n");
            }
            for (payload_type, parameters) in &media.fmtps {
                out.push_str("a=fmtp:");
                push_decimal(&mut out, payload_type.0.into());
                out.push(' ');
                out.push_str(parameters);
                out.push_str("\r\n");
            }
            if let Some(ptime) = media.ptime {
                out.push_str("a=ptime:");
                push_decimal(&mut out, ptime.into());
                out.push_str("\r\n");
            }
            if let Some(direction) = media.direction {
                push_attribute(&mut out, direction.attribute());
            }
            if let Some(rtcp) = media.rtcp {
                out.push_str("a=rtcp:");
                push_decimal(&mut out, rtcp.port.into());
                if let Some(address) = rtcp.address {
                    push_address(&mut out, " IN ", address);
                }
                out.push_str("\r\n");
            }
            if media.rtcp_mux {
                push_attribute(&mut out, "rtcp-mux");
            }
        }
        out
    }
}

impl fmt::Display for Session {
    /// Writes [`Session::to_text`].
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        out.write_str(&self.to_text())
    }
}

/// Room for a one-stream audio description with a few codecs: ~250 bytes.
const TYPICAL_TEXT_LEN: usize = 384;

fn push_decimal(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// `prefix`, the address type and the address: `c=IN IP4 192.0.2.1`.
fn push_address(out: &mut String, prefix: &str, address: IpAddr) {
    out.push_str(prefix);
    out.push_str(address_type(address));
    out.push(' ');
    // An address prints at most 45 characters; the fmt machinery runs once for it.
    let _ = write!(out, "{address}");
}

fn push_attribute(out: &mut String, attribute: &str) {
    out.push_str("a=");
    out.push_str(attribute);
    out.push_str("\r\n");
}

fn is_active_audio(media: &Media) -> bool {
    // RFC 3551 names the profile "RTP/AVP"; RFC 4566 §5.14 compares it case-sensitively, but
    // some peers lower-case it, which costs nothing to accept.
    media.kind == "audio" && media.port != 0 && media.protocol.eq_ignore_ascii_case("RTP/AVP")
}

fn audio_media(
    port: u16,
    codecs: impl Iterator<Item = (Codec, PayloadType)>,
    telephone_event: Option<PayloadType>,
    direction: Direction,
    rtcp_mux: bool,
) -> Media {
    let mut media = Media {
        kind: CompactString::const_new("audio"),
        port,
        protocol: CompactString::const_new("RTP/AVP"),
        formats: Vec::new(),
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: Some(PTIME_MILLISECONDS),
        direction: Some(direction),
        rtcp: None,
        rtcp_mux,
    };
    for (codec, payload_type) in codecs {
        media.formats.push(payload_type.0.to_compact_string());
        media.rtpmaps.push(RtpMap {
            payload_type,
            encoding: CompactString::const_new(codec.encoding_name()),
            clock_rate: CLOCK_RATE,
            channels: None,
        });
    }
    if let Some(payload_type) = telephone_event {
        media.formats.push(payload_type.0.to_compact_string());
        media.rtpmaps.push(RtpMap {
            payload_type,
            encoding: CompactString::const_new("telephone-event"),
            clock_rate: CLOCK_RATE,
            channels: None,
        });
        // RFC 4733 §7.1.1: without fmtp the receiver may assume 0-15; list 0-16 explicitly.
        media
            .fmtps
            .push((payload_type, TELEPHONE_EVENTS.to_owned()));
    }
    media
}

fn address_type(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// RFC 4566 §5.2: `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`.
fn parse_origin(value: &str, line: usize) -> Result<Origin, SdpError> {
    let fields: Vec<&str> = value.split_ascii_whitespace().take(7).collect();
    let [username, id, version, "IN", _, address] = fields.as_slice() else {
        return Err(SdpError::BadField {
            line,
            field: "origin",
        });
    };
    let number = |text: &str| {
        text.parse::<u64>().map_err(|_| SdpError::BadField {
            line,
            field: "origin session id or version",
        })
    };
    Ok(Origin {
        username: (*username).into(),
        session_id: number(id)?,
        session_version: number(version)?,
        // The origin address is informational; a host name there is legal and harmless.
        address: address.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
    })
}

/// RFC 4566 §5.7: `c=<nettype> <addrtype> <connection-address>`, with an optional
/// `/ttl[/count]` suffix for multicast.
fn parse_connection(value: &str, line: usize) -> Result<IpAddr, SdpError> {
    let fields: Vec<&str> = value.split_ascii_whitespace().take(4).collect();
    let ["IN", address_type, address] = fields.as_slice() else {
        return Err(SdpError::BadField {
            line,
            field: "connection",
        });
    };
    let literal = address.split('/').next().unwrap_or(address);
    let address: IpAddr = literal
        .parse()
        .map_err(|_| SdpError::UnsupportedAddress { line })?;
    match (*address_type, address) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(address),
        _ => Err(SdpError::BadField {
            line,
            field: "connection address type",
        }),
    }
}

/// RFC 4566 §5.14: `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`.
fn parse_media(value: &str, line: usize) -> Result<Media, SdpError> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(protocol)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(SdpError::BadField {
            line,
            field: "media",
        });
    };
    let port = port
        .split('/')
        .next()
        .and_then(|port| port.parse::<u16>().ok())
        .ok_or(SdpError::BadField {
            line,
            field: "media port",
        })?;
    let mut formats = Vec::new();
    for format in fields {
        if formats.len() == MAX_FORMATS {
            return Err(SdpError::TooMany { what: "formats" });
        }
        formats.push(CompactString::from(format));
    }
    Ok(Media {
        kind: kind.into(),
        port,
        protocol: protocol.into(),
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        direction: None,
        rtcp: None,
        rtcp_mux: false,
    })
}

fn parse_rtcp_attribute(argument: &str) -> Option<RtcpAttribute> {
    let mut fields = argument.split_ascii_whitespace();
    let port = fields.next()?.parse::<u16>().ok()?;
    let address = match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (None, ..) => None,
        (Some("IN"), Some(_), Some(address), None) => Some(address.parse::<IpAddr>().ok()?),
        _ => return None,
    };
    Some(RtcpAttribute { port, address })
}

fn parse_media_attribute(media: &mut Media, value: &str, line: usize) -> Result<(), SdpError> {
    let (name, argument) = value.split_once(':').unwrap_or((value, ""));
    match name {
        "rtcp" => {
            // RFC 3605 §2.1: a=rtcp:<port> [<nettype> <addrtype> <connection-address>]. A
            // malformed one is ignored like an unknown attribute (RFC 4566 §5.13), leaving
            // RTCP at RTP port + 1, rather than failing the whole offer.
            media.rtcp = parse_rtcp_attribute(argument);
        }
        "rtcp-mux" => media.rtcp_mux = true,
        "rtpmap" => {
            // RFC 4566 §6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<params>].
            let bad = SdpError::BadField {
                line,
                field: "rtpmap",
            };
            let (payload_type, encoding) = argument.split_once(' ').ok_or(bad.clone())?;
            let payload_type = payload_type
                .parse::<u8>()
                .ok()
                .filter(|&number| number < 128)
                .ok_or(bad.clone())?;
            let mut parts = encoding.trim().split('/');
            let name = parts.next().unwrap_or_default();
            let clock_rate = parts
                .next()
                .and_then(|rate| rate.parse::<u32>().ok())
                .ok_or(bad.clone())?;
            let channels = match parts.next() {
                Some(channels) => Some(channels.parse::<u8>().map_err(|_| bad.clone())?),
                None => None,
            };
            if media.rtpmaps.len() < MAX_FORMATS {
                media.rtpmaps.push(RtpMap {
                    payload_type: PayloadType(payload_type),
                    encoding: name.into(),
                    clock_rate,
                    channels,
                });
            }
        }
        "fmtp" => {
            if let Some((payload_type, parameters)) = argument.split_once(' ') {
                if let Ok(payload_type) = payload_type.parse::<u8>() {
                    if media.fmtps.len() < MAX_FORMATS {
                        media
                            .fmtps
                            .push((PayloadType(payload_type), parameters.trim().to_owned()));
                    }
                }
            }
        }
        "ptime" => {
            media.ptime = Some(argument.trim().parse().map_err(|_| SdpError::BadField {
                line,
                field: "ptime",
            })?);
        }
        _ => {
            if let Some(direction) = Direction::from_attribute(name) {
                media.direction = Some(direction);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_is_written_exactly() {
        let local: SocketAddr = "192.0.2.10:20000".parse().unwrap();
        let text = offer(local, &[Codec::Pcmu, Codec::Pcma], 42).to_text();
        assert_eq!(
            text,
            "v=0\r\no=- 42 42 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
             m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
             a=sendrecv\r\na=rtcp-mux\r\n"
        );
        let mut decimals = String::new();
        for value in [0, 7, 10, 65_535, u64::MAX] {
            push_decimal(&mut decimals, value);
            decimals.push(' ');
        }
        assert_eq!(decimals, "0 7 10 65535 18446744073709551615 ");
    }

    #[test]
    fn a_parsed_offers_short_fields_are_stored_inline() {
        let local: SocketAddr = "192.0.2.10:20000".parse().unwrap();
        let text = offer(local, &[Codec::Pcmu, Codec::Pcma], 42).to_text();
        let session = Session::parse(text.as_bytes()).unwrap();
        let inline = |value: &CompactString| !value.is_heap_allocated();
        assert!(inline(&session.origin.username) && inline(&session.name));
        let media = &session.media[0];
        assert!(inline(&media.kind) && inline(&media.protocol));
        assert!(media.formats.iter().all(inline));
        assert!(media.rtpmaps.iter().all(|map| inline(&map.encoding)));
    }

    #[test]
    fn an_offer_round_trips_through_text() {
        let local: SocketAddr = "192.0.2.10:20000".parse().unwrap();
        let session = offer(local, &[Codec::Pcmu, Codec::Pcma], 42);
        let text = session.to_string();
        assert!(text.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"), "{text}");
        assert!(text.contains("a=fmtp:101 0-16\r\n"));
        assert_eq!(Session::parse(text.as_bytes()).unwrap(), session);
    }

    #[test]
    fn the_next_origin_keeps_the_id_and_increments_the_version_only_on_a_change() {
        let origin = offer("192.0.2.10:20000".parse().unwrap(), &[Codec::Pcmu], 42).origin;
        let changed = origin.next(true);
        assert_eq!(changed.session_id, 42);
        assert_eq!(changed.session_version, 43);
        assert_eq!(changed.username, origin.username);
        assert_eq!(changed.address, origin.address);
        assert_eq!(origin.next(false), origin);
        assert_eq!(changed.next(true).session_version, 44);
    }

    #[test]
    fn a_following_description_reuses_the_origin_and_is_versioned_by_its_content() {
        let local: SocketAddr = "192.0.2.10:20000".parse().unwrap();
        let first = offer(local, &[Codec::Pcmu, Codec::Pcma], 42);
        let peer = Session::parse(
            b"v=0\r\no=- 7 7 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n\
              m=audio 4000 RTP/AVP 8\r\na=sendonly\r\n",
        )
        .unwrap();
        // An answer built afresh has an origin of its own; following ours, it takes ours.
        let changed = answer(&peer, local, &[Codec::Pcmu, Codec::Pcma], true)
            .unwrap()
            .session
            .following(&first);
        let text = changed.to_string();
        assert!(text.contains("o=- 42 43 IN IP4 192.0.2.10\r\n"), "{text}");
        assert!(text.contains("a=recvonly\r\n"), "{text}");
        // The same description again keeps the version: it is byte for byte the same SDP.
        let again = changed.clone().following(&changed);
        assert_eq!(again.to_string(), text);
        // The first one again is a change back, so a new version.
        let back = first.clone().following(&changed);
        assert!(back.to_string().contains("o=- 42 44 IN IP4 192.0.2.10\r\n"));
        assert_eq!(back.media, first.media);
    }

    #[test]
    fn direction_is_mirrored() {
        assert_eq!(Direction::SendOnly.answered(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.answered(), Direction::SendOnly);
        assert_eq!(Direction::Inactive.answered(), Direction::Inactive);
        assert_eq!(Direction::SendRecv.answered(), Direction::SendRecv);
    }
}
