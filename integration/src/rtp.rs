//! A plain-RTP endpoint for tests: a UDP socket on 127.0.0.1 port 0 that sends paced G.711-sized
//! packets and RFC 4733 telephone events, records what it receives, and writes and reads the
//! minimal SDP an audio leg needs.
//!
//! The 12-byte RTP header (RFC 3550 §5.1) is built and parsed here by hand rather than with
//! Tandem's media crate, so that a bug there cannot hide behind the same bug here.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The payload type of telephone events this endpoint offers and sends (dynamic, RFC 4733).
pub const TELEPHONE_EVENT: u8 = 101;
/// Samples per 20 ms packet at 8 kHz: the payload size of G.711 and the timestamp step.
pub const SAMPLES_PER_PACKET: u32 = 160;
/// The packet interval.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// Packets kept at most; later ones are dropped, so a forgotten stream cannot grow without end.
const MAX_RECORDED: usize = 100_000;
/// RFC 4733 §2.5.1.4: the final packet of an event is sent three times.
const END_PACKETS: u16 = 3;
/// Telephone-event packets sent before the end packets (each 20 ms long, so a 100 ms tone).
const EVENT_PACKETS: u16 = 5;
/// The volume field of the events sent: 10 means -10 dBm0 (RFC 4733 §2.3.2).
const EVENT_VOLUME: u8 = 10;

/// One received RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Where it came from.
    pub from: SocketAddr,
    /// The marker bit.
    pub marker: bool,
    /// The payload type.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The timestamp.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
    /// The payload (after CSRCs, header extension and before padding).
    pub payload: Vec<u8>,
    /// When it arrived.
    pub arrived: Instant,
}

/// A telephone event carried in an RTP payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code: 0-9, 10 = `*`, 11 = `#`, 12-15 = A-D.
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level in -dBm0.
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

/// A UDP socket speaking plain RTP. Dropping it stops its tasks.
pub struct RtpEndpoint {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    stream: Arc<Mutex<Stream>>,
    received: Arc<Mutex<Vec<RtpPacket>>>,
    count: watch::Receiver<usize>,
    receiver: JoinHandle<()>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

/// The state of the one RTP stream this endpoint sends (audio and events share it, as RFC 4733
/// §2.1 asks: events travel in the audio stream's SSRC and sequence space).
#[derive(Debug)]
struct Stream {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// While an event is sent, audio packets are held back (RFC 4733 §2.6).
    event_active: bool,
    /// The next audio packet starts a talkspurt (marker bit, RFC 3551 §4.1).
    start_of_talkspurt: bool,
    sent: u64,
}

impl RtpEndpoint {
    /// Binds 127.0.0.1 port 0 and starts recording what arrives.
    pub async fn bind() -> RtpEndpoint {
        let socket = Arc::new(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("a free UDP port"),
        );
        let addr = socket.local_addr().expect("a bound address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (count_tx, count) = watch::channel(0);
        let receiver = tokio::spawn(receive(socket.clone(), received.clone(), count_tx));
        RtpEndpoint {
            socket,
            addr,
            stream: Arc::new(Mutex::new(Stream {
                ssrc: rand::random(),
                sequence: rand::random(),
                timestamp: rand::random(),
                event_active: false,
                start_of_talkspurt: true,
                sent: 0,
            })),
            received,
            count,
            receiver,
            sender: Mutex::new(None),
        }
    }

    /// The socket's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SSRC of the stream this endpoint sends.
    pub fn ssrc(&self) -> u32 {
        lock(&self.stream).ssrc
    }

    /// Packets sent so far (audio and events).
    pub fn packets_sent(&self) -> u64 {
        lock(&self.stream).sent
    }

    /// An SDP offer for this endpoint (see [`sdp_offer_for`]).
    pub fn sdp_offer(&self) -> String {
        sdp_offer_for(self.addr)
    }

    /// An SDP answer to `offer` for this endpoint (see [`sdp_answer_for`]).
    pub fn sdp_answer(&self, offer: &str) -> String {
        sdp_answer_for(self.addr, offer)
    }

    /// Starts sending 160-byte payloads filled with `pattern_byte` to `dest` every 20 ms, with
    /// consecutive sequence numbers and timestamps, until [`RtpEndpoint::stop_sending`] (or a
    /// new `start_sending`, which replaces this stream's destination and payload).
    pub fn start_sending(&self, dest: SocketAddr, payload_type: u8, pattern_byte: u8) {
        self.stop_sending();
        lock(&self.stream).start_of_talkspurt = true;
        let socket = self.socket.clone();
        let stream = self.stream.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(PACKET_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let payload = [pattern_byte; SAMPLES_PER_PACKET as usize];
            loop {
                interval.tick().await;
                let packet = {
                    let mut stream = lock(&stream);
                    if stream.event_active {
                        // The event's packets stand in for audio; its clock still runs.
                        stream.timestamp = stream.timestamp.wrapping_add(SAMPLES_PER_PACKET);
                        continue;
                    }
                    let marker = std::mem::take(&mut stream.start_of_talkspurt);
                    let packet = build_rtp(
                        marker,
                        payload_type,
                        stream.sequence,
                        stream.timestamp,
                        stream.ssrc,
                        &payload,
                    );
                    stream.sequence = stream.sequence.wrapping_add(1);
                    stream.timestamp = stream.timestamp.wrapping_add(SAMPLES_PER_PACKET);
                    stream.sent += 1;
                    packet
                };
                let _ = socket.send_to(&packet, dest).await;
            }
        });
        *lock(&self.sender) = Some(task);
    }

    /// Stops the stream started by [`RtpEndpoint::start_sending`].
    pub fn stop_sending(&self) {
        if let Some(task) = lock(&self.sender).take() {
            task.abort();
        }
    }

    /// Sends one RTP packet of this endpoint's stream (next sequence number, current timestamp).
    pub async fn send_packet(
        &self,
        dest: SocketAddr,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
    ) {
        let packet = {
            let mut stream = lock(&self.stream);
            let packet = build_rtp(
                marker,
                payload_type,
                stream.sequence,
                stream.timestamp,
                stream.ssrc,
                payload,
            );
            stream.sequence = stream.sequence.wrapping_add(1);
            stream.timestamp = stream.timestamp.wrapping_add(SAMPLES_PER_PACKET);
            stream.sent += 1;
            packet
        };
        self.socket
            .send_to(&packet, dest)
            .await
            .expect("sending an RTP packet");
    }

    /// Sends `digit` (0-9, `*`, `#`, A-D) to `dest` as an RFC 4733 telephone event with payload
    /// type 101. See [`RtpEndpoint::send_dtmf_as`].
    pub async fn send_dtmf(&self, dest: SocketAddr, digit: char) {
        self.send_dtmf_as(dest, digit, TELEPHONE_EVENT).await;
    }

    /// Sends `digit` to `dest` as a telephone event with `payload_type` (RFC 4733 §2.5.1): one
    /// timestamp for the whole event, the marker bit on its first packet, five packets 20 ms
    /// apart with growing durations, then three end packets (E bit) with the final duration.
    /// Audio of a running stream is held back meanwhile.
    pub async fn send_dtmf_as(&self, dest: SocketAddr, digit: char, payload_type: u8) {
        let event = dtmf_event(digit).unwrap_or_else(|| panic!("{digit:?} is not a DTMF digit"));
        let step = u16::try_from(SAMPLES_PER_PACKET).expect("160 fits");
        let event_timestamp = {
            let mut stream = lock(&self.stream);
            stream.event_active = true;
            stream.timestamp
        };
        let mut interval = tokio::time::interval(PACKET_INTERVAL);
        let total = EVENT_PACKETS + END_PACKETS;
        for index in 0..total {
            interval.tick().await;
            let end = index >= EVENT_PACKETS;
            let duration = step * (index.min(EVENT_PACKETS - 1) + 1);
            let payload = telephone_event_payload(TelephoneEvent {
                event,
                end,
                volume: EVENT_VOLUME,
                duration,
            });
            let packet = {
                let mut stream = lock(&self.stream);
                let packet = build_rtp(
                    index == 0,
                    payload_type,
                    stream.sequence,
                    event_timestamp,
                    stream.ssrc,
                    &payload,
                );
                stream.sequence = stream.sequence.wrapping_add(1);
                stream.sent += 1;
                packet
            };
            self.socket
                .send_to(&packet, dest)
                .await
                .expect("sending a telephone event");
        }
        let mut stream = lock(&self.stream);
        stream.event_active = false;
        // The next audio packet starts after the event (RFC 4733 §2.5.1.5); if audio ran
        // meanwhile its clock is already further on.
        let after_event = event_timestamp
            .wrapping_add(u32::from(step) * u32::from(EVENT_PACKETS))
            .wrapping_add(SAMPLES_PER_PACKET);
        if after_event.wrapping_sub(stream.timestamp) < u32::MAX / 2 {
            stream.timestamp = after_event;
        }
        stream.start_of_talkspurt = true;
    }

    /// Every packet received so far, in arrival order.
    pub fn received(&self) -> Vec<RtpPacket> {
        lock(&self.received).clone()
    }

    /// Forgets the packets received so far.
    pub fn clear_received(&self) {
        lock(&self.received).clear();
    }

    /// Waits until at least `n` packets have been received (since the last clear) and returns
    /// them all; panics after `timeout` saying how many came.
    pub async fn wait_packets(&self, n: usize, timeout: Duration) -> Vec<RtpPacket> {
        let mut count = self.count.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            if tokio::time::timeout_at(deadline, count.changed())
                .await
                .is_err()
            {
                panic!(
                    "{n} RTP packet(s) expected on {} within {timeout:?}; got {}",
                    self.addr,
                    received.len()
                );
            }
        }
    }

    /// The digits of the telephone events received with `payload_type`, one per event (packets
    /// of one event share a timestamp and SSRC), in order.
    pub fn dtmf_digits(&self, payload_type: u8) -> String {
        let mut digits = String::new();
        let mut seen: Vec<(u32, u32)> = Vec::new();
        for packet in lock(&self.received)
            .iter()
            .filter(|p| p.payload_type == payload_type)
        {
            let Some(event) = parse_telephone_event(&packet.payload) else {
                continue;
            };
            if seen.contains(&(packet.ssrc, packet.timestamp)) {
                continue;
            }
            seen.push((packet.ssrc, packet.timestamp));
            if let Some(digit) = dtmf_digit(event.event) {
                digits.push(digit);
            }
        }
        digits
    }

    /// Waits until `count` telephone-event digits with `payload_type` have arrived and returns
    /// them; panics after `timeout` with what did arrive.
    pub async fn wait_dtmf(&self, payload_type: u8, count: usize, timeout: Duration) -> String {
        let mut changes = self.count.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let digits = self.dtmf_digits(payload_type);
            if digits.chars().count() >= count {
                return digits;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!("{count} DTMF digit(s) expected within {timeout:?}; got {digits:?}");
            }
        }
    }
}

impl Drop for RtpEndpoint {
    fn drop(&mut self) {
        self.receiver.abort();
        self.stop_sending();
    }
}

/// An SDP offer for media at `addr`: one audio stream, PCMU (0), PCMA (8) and
/// telephone-event (101), 20 ms packets.
pub fn sdp_offer_for(addr: SocketAddr) -> String {
    sdp(addr, &[0, 8], Some(TELEPHONE_EVENT))
}

/// An SDP offer for media at `addr` listing only the payload types `codecs`, in order (0 and
/// 8 with their rtpmap, any other number as it is), and telephone-event (101).
pub fn sdp_offer_with(addr: SocketAddr, codecs: &[u8]) -> String {
    sdp(addr, codecs, Some(TELEPHONE_EVENT))
}

/// An SDP answer to `offer` for media at `addr` (RFC 3264 §6.1): the first of PCMU/PCMA the
/// offer lists, and telephone-event under the offer's payload type if it has one. With no
/// common codec the stream is refused (port 0). Panics if `offer` has no audio stream.
pub fn sdp_answer_for(addr: SocketAddr, offer: &str) -> String {
    let Some(offered) = try_parse_sdp_audio(offer) else {
        panic!("not an SDP offer with an audio stream:\n{offer}");
    };
    let codec = offered
        .payload_types
        .iter()
        .copied()
        .find(|pt| *pt == 0 || *pt == 8);
    match codec {
        Some(codec) => sdp(addr, &[codec], telephone_event_type(offer)),
        None => sdp(SocketAddr::new(addr.ip(), 0), &[0], None),
    }
}

/// The audio stream of an SDP: where to send, and the payload types offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpAudio {
    /// The connection address (media-level `c=` if present, else session-level) and port.
    pub addr: SocketAddr,
    /// The payload types of the `m=audio` line, in order.
    pub payload_types: Vec<u8>,
}

/// The first audio stream of `sdp`: its address and payload types. Panics if there is none.
pub fn parse_sdp_audio(sdp: &str) -> (SocketAddr, Vec<u8>) {
    match try_parse_sdp_audio(sdp) {
        Some(audio) => (audio.addr, audio.payload_types),
        None => panic!("no usable audio stream in SDP:\n{sdp}"),
    }
}

/// The first audio stream of `sdp`, or `None` if there is no `m=audio` line with a connection
/// address (RFC 4566 §5.7: `c=` at session level, or in every media description).
pub fn try_parse_sdp_audio(sdp: &str) -> Option<SdpAudio> {
    let mut session_ip: Option<IpAddr> = None;
    let mut media: Option<(u16, Vec<u8>, Option<IpAddr>)> = None;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("m=") {
            if media.is_some() {
                // Only the first audio stream counts; a later m= line ends it.
                break;
            }
            let mut fields = rest.split_whitespace();
            if fields.next() != Some("audio") {
                continue;
            }
            let port = fields.next()?.split('/').next()?.parse().ok()?;
            let _protocol = fields.next()?;
            let payload_types = fields
                .map(|f| f.parse().ok())
                .collect::<Option<Vec<u8>>>()?;
            media = Some((port, payload_types, None));
        } else if let Some(rest) = line.strip_prefix("c=") {
            let ip = connection_address(rest)?;
            match media.as_mut() {
                Some((_, _, media_ip)) => *media_ip = Some(ip),
                None => session_ip = Some(ip),
            }
        }
    }
    let (port, payload_types, media_ip) = media?;
    let ip = media_ip.or(session_ip)?;
    Some(SdpAudio {
        addr: SocketAddr::new(ip, port),
        payload_types,
    })
}

/// The payload type `sdp` maps to `telephone-event/8000`, if any.
pub fn telephone_event_type(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim_end_matches('\r').strip_prefix("a=rtpmap:")?;
        let (pt, encoding) = rest.split_once(' ')?;
        encoding
            .to_ascii_lowercase()
            .starts_with("telephone-event/8000")
            .then(|| pt.parse().ok())
            .flatten()
    })
}

/// An RTP packet (RFC 3550 §5.1): version 2, no padding, extension or CSRCs.
pub fn build_rtp(
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut packet = Vec::with_capacity(12 + payload.len());
    packet.push(0x80);
    packet.push(u8::from(marker) << 7 | (payload_type & 0x7f));
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// Parses an RTP packet received from `from` (RFC 3550 §5.1 and §5.3.1): `None` unless it is
/// version 2 and long enough for its CSRCs, extension and padding.
pub fn parse_rtp(bytes: &[u8], from: SocketAddr, arrived: Instant) -> Option<RtpPacket> {
    if bytes.len() < 12 || bytes[0] >> 6 != 2 {
        return None;
    }
    let padding = bytes[0] & 0x20 != 0;
    let extension = bytes[0] & 0x10 != 0;
    let csrc_count = usize::from(bytes[0] & 0x0f);
    let mut start = 12 + 4 * csrc_count;
    if extension {
        let header = bytes.get(start..start + 4)?;
        let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
        start += 4 + 4 * words;
    }
    let mut end = bytes.len();
    if padding {
        let count = usize::from(*bytes.last()?);
        end = end.checked_sub(count)?;
    }
    let payload = bytes.get(start..end)?.to_vec();
    Some(RtpPacket {
        from,
        marker: bytes[1] & 0x80 != 0,
        payload_type: bytes[1] & 0x7f,
        sequence: u16::from_be_bytes([bytes[2], bytes[3]]),
        timestamp: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        ssrc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        payload,
        arrived,
    })
}

/// The 4-byte payload of a telephone event (RFC 4733 §2.3).
pub fn telephone_event_payload(event: TelephoneEvent) -> [u8; 4] {
    let duration = event.duration.to_be_bytes();
    [
        event.event,
        u8::from(event.end) << 7 | (event.volume & 0x3f),
        duration[0],
        duration[1],
    ]
}

/// Reads a telephone-event payload (RFC 4733 §2.3); `None` if shorter than 4 bytes.
pub fn parse_telephone_event(payload: &[u8]) -> Option<TelephoneEvent> {
    let bytes = payload.get(..4)?;
    Some(TelephoneEvent {
        event: bytes[0],
        end: bytes[1] & 0x80 != 0,
        volume: bytes[1] & 0x3f,
        duration: u16::from_be_bytes([bytes[2], bytes[3]]),
    })
}

/// The event code of a DTMF digit (RFC 4733 §3.2, table 7).
pub fn dtmf_event(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// The digit of a DTMF event code.
pub fn dtmf_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// A minimal audio SDP (RFC 4566, RFC 3264) for `addr` with `codecs` and optional events.
fn sdp(addr: SocketAddr, codecs: &[u8], events: Option<u8>) -> String {
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let ip = addr.ip();
    let session: u32 = rand::random();
    let mut formats: Vec<String> = codecs.iter().map(u8::to_string).collect();
    formats.extend(events.map(|pt| pt.to_string()));
    let mut text = format!(
        "v=0\r\no=- {session} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n",
        port = addr.port(),
        formats = formats.join(" "),
    );
    for codec in codecs {
        match codec {
            0 => text.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            8 => text.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            _ => {}
        }
    }
    if let Some(pt) = events {
        text.push_str(&format!(
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-15\r\n"
        ));
    }
    text.push_str("a=ptime:20\r\na=sendrecv\r\n");
    text
}

/// The address of a `c=` value: `IN IP4 ADDRESS[/TTL]` or `IN IP6 ADDRESS`.
fn connection_address(value: &str) -> Option<IpAddr> {
    let mut fields = value.split_whitespace();
    if fields.next()? != "IN" {
        return None;
    }
    let _family = fields.next()?;
    fields.next()?.split('/').next()?.parse().ok()
}

async fn receive(
    socket: Arc<UdpSocket>,
    received: Arc<Mutex<Vec<RtpPacket>>>,
    count: watch::Sender<usize>,
) {
    let mut buffer = vec![0u8; 2048];
    loop {
        let Ok((length, from)) = socket.recv_from(&mut buffer).await else {
            // ICMP errors from an earlier send surface here on some systems; keep listening.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let Some(packet) = parse_rtp(&buffer[..length], from, Instant::now()) else {
            continue;
        };
        let mut received = lock(&received);
        if received.len() < MAX_RECORDED {
            received.push(packet);
            count.send_replace(received.len());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn packets_round_trip_and_csrcs_extensions_and_padding_are_skipped() {
        let built = build_rtp(true, 8, 65535, 0xdead_beef, 42, b"abc");
        let parsed = parse_rtp(&built, from(), Instant::now()).unwrap();
        assert!(parsed.marker);
        assert_eq!(
            (
                parsed.payload_type,
                parsed.sequence,
                parsed.timestamp,
                parsed.ssrc
            ),
            (8, 65535, 0xdead_beef, 42)
        );
        assert_eq!(parsed.payload, b"abc");

        // Padding, extension and one CSRC (RFC 3550 §5.1, §5.3.1).
        let mut packet = vec![0x80 | 0x20 | 0x10 | 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        packet.extend_from_slice(&[9, 9, 9, 9]); // CSRC
        packet.extend_from_slice(&[0xbe, 0xde, 0, 1, 7, 7, 7, 7]); // one extension word
        packet.extend_from_slice(b"payload");
        packet.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let parsed = parse_rtp(&packet, from(), Instant::now()).unwrap();
        assert_eq!(parsed.payload, b"payload");

        assert!(parse_rtp(&built[..11], from(), Instant::now()).is_none());
        let mut version_1 = built.clone();
        version_1[0] = 0x40;
        assert!(parse_rtp(&version_1, from(), Instant::now()).is_none());
        let mut too_much_padding = built;
        too_much_padding.push(200);
        too_much_padding[0] |= 0x20;
        assert!(parse_rtp(&too_much_padding, from(), Instant::now()).is_none());
    }

    #[test]
    fn a_media_level_connection_overrides_the_session_level_one() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 8 96\r\nc=IN IP4 127.0.0.2/127\r\n\
                   a=rtpmap:96 telephone-event/8000\r\nm=video 5000 RTP/AVP 31\r\n";
        let audio = try_parse_sdp_audio(sdp).unwrap();
        assert_eq!(audio.addr, "127.0.0.2:4000".parse().unwrap());
        assert_eq!(audio.payload_types, vec![8, 96]);
        assert_eq!(telephone_event_type(sdp), Some(96));
        // The answer keeps the offer's event payload type and picks PCMA.
        let answer = sdp_answer_for(from(), sdp);
        assert_eq!(parse_sdp_audio(&answer), (from(), vec![8, 96]));
        assert!(try_parse_sdp_audio("v=0\r\nm=audio 4000 RTP/AVP 0\r\n").is_none());
    }

    #[test]
    fn dtmf_digits_and_events_map_both_ways() {
        for (digit, event) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('D', 15),
        ] {
            assert_eq!(dtmf_event(digit), Some(event));
            assert_eq!(dtmf_digit(event), Some(digit));
        }
        assert_eq!(dtmf_event('x'), None);
        assert_eq!(dtmf_digit(16), None);
        let event = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(
            parse_telephone_event(&telephone_event_payload(event)),
            Some(event)
        );
    }
}
