//! The relay with real UDP sockets on 127.0.0.1: audio both ways, PCMU → PCMA transcoding,
//! telephone-events mapped between payload types, a third party's packets dropped, latching
//! onto the first source only, hold, and a leg followed to the address and codec its re-INVITE
//! moved it to.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use media::codec;
use media::rtp::forward::LegFormat;
use media::rtp::packet::{self, Header};
use media::rtp::relay::{Leg, LegSession, RelayConfig, Relays, RelaysConfig, RtcpEndpoint, Side};
use media::rtp::{Codec, Packet, PayloadType, RtpTimestamp, SeqNo, Ssrc};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const PCMU_LEG: LegFormat = LegFormat {
    codec: Codec::Pcmu,
    payload_type: PayloadType::PCMU,
    telephone_event: Some(PayloadType(101)),
};

const PCMA_LEG: LegFormat = LegFormat {
    codec: Codec::Pcma,
    payload_type: PayloadType::PCMA,
    telephone_event: Some(PayloadType(96)),
};

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn address(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().unwrap()
}

/// A relay-side socket, as the port pool hands them out: std, non-blocking.
fn relay_socket() -> Arc<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    Arc::new(socket)
}

/// One relay thread of its own per test.
fn relays() -> Relays {
    Relays::spawn(RelaysConfig { threads: 1 }).unwrap()
}

fn datagram(payload_type: u8, sequence: u16, timestamp: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        payload_type: PayloadType(payload_type),
        marker: false,
        sequence: SeqNo(sequence),
        timestamp: RtpTimestamp(timestamp),
        ssrc: Ssrc(0xABCD),
    };
    let mut buffer = Vec::new();
    packet::write(&header, payload, &mut buffer);
    buffer
}

/// Receives one datagram within a second, returning its bytes and source.
async fn receive(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buffer = vec![0u8; 2048];
    let (length, from) = timeout(Duration::from_secs(1), socket.recv_from(&mut buffer))
        .await
        .expect("a packet within a second")
        .unwrap();
    buffer.truncate(length);
    (buffer, from)
}

struct Call {
    relay_a: Arc<std::net::UdpSocket>,
    relay_b: Arc<std::net::UdpSocket>,
    phone_a: UdpSocket,
    phone_b: UdpSocket,
}

async fn call() -> Call {
    Call {
        relay_a: relay_socket(),
        relay_b: relay_socket(),
        phone_a: socket().await,
        phone_b: socket().await,
    }
}

fn leg(
    socket: &Arc<std::net::UdpSocket>,
    remote: SocketAddr,
    format: LegFormat,
    latching: bool,
) -> Leg {
    Leg {
        socket: Arc::clone(socket),
        remote,
        format,
        latching,
        rtcp: None,
    }
}

#[tokio::test]
async fn audio_flows_both_ways_with_pcmu_to_pcma_transcoding_and_events() {
    let call = call().await;
    let relay = relays().relay(
        leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, false),
        leg(&call.relay_b, address(&call.phone_b), PCMA_LEG, false),
        RelayConfig::default(),
    );
    let ulaw: Vec<u8> = (0..160).map(|index| (index * 7 % 256) as u8).collect();
    let mut seen_ssrc = None;
    for index in 0..5u16 {
        let sent = datagram(0, 1_000 + index, 16_000 + 160 * u32::from(index), &ulaw);
        call.phone_a
            .send_to(&sent, call.relay_a.local_addr().unwrap())
            .await
            .unwrap();
        let (bytes, from) = receive(&call.phone_b).await;
        assert_eq!(
            from,
            call.relay_b.local_addr().unwrap(),
            "B hears the relay's B-side socket"
        );
        let packet = Packet::parse(&bytes).unwrap();
        assert_eq!(packet.header.payload_type, PayloadType::PCMA);
        let expected = alaw_of(&ulaw);
        assert_eq!(packet.payload, expected.as_slice());
        assert_ne!(packet.header.ssrc, Ssrc(0xABCD), "the SSRC is rewritten");
        let ssrc = *seen_ssrc.get_or_insert(packet.header.ssrc);
        assert_eq!(packet.header.ssrc, ssrc);
        assert_eq!(packet.header.marker, index == 0);
    }

    // B → A: A-law back to µ-law.
    let alaw: Vec<u8> = (0..160).map(|index| (255 - index) as u8).collect();
    call.phone_b
        .send_to(
            &datagram(8, 7, 99, &alaw),
            call.relay_b.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_a).await;
    let packet = Packet::parse(&bytes).unwrap();
    assert_eq!(packet.header.payload_type, PayloadType::PCMU);
    let expected: Vec<u8> = alaw
        .iter()
        .map(|&code| codec::alaw_to_ulaw_code(code))
        .collect();
    assert_eq!(packet.payload, expected.as_slice());

    // A DTMF event from A arrives at B as a telephone-event on B's payload type.
    let event = [1u8, 0x8A, 0x03, 0x20];
    call.phone_a
        .send_to(
            &datagram(101, 1_005, 16_800, &event),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    let packet = Packet::parse(&bytes).unwrap();
    assert_eq!(packet.header.payload_type, PayloadType(96));
    assert_eq!(packet.payload, &event);

    let report = relay.stop().await;
    assert_eq!(report.a_to_b.forwarded, 6);
    assert_eq!(report.b_to_a.forwarded, 1);
    assert_eq!(report.a_to_b.received.unwrap().received, 6);
    assert_eq!(report.a_to_b.received.unwrap().cumulative_lost, 0);
}

#[tokio::test]
async fn media_queued_before_the_bridge_is_dropped_and_what_follows_is_relayed() {
    let call = call().await;
    let ulaw = [0x55u8; 160];
    // Audio the caller sent while nobody read its socket (a dial ringing).
    for index in 0..20u16 {
        call.phone_a
            .send_to(
                &datagram(0, index, 160 * u32::from(index), &ulaw),
                call.relay_a.local_addr().unwrap(),
            )
            .await
            .unwrap();
    }
    let relay = relays().relay(
        leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, false),
        leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
        RelayConfig::default(),
    );
    let fresh = [0x33u8; 160];
    call.phone_a
        .send_to(
            &datagram(0, 20, 3_200, &fresh),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    let packet = Packet::parse(&bytes).unwrap();
    assert_eq!(
        packet.payload, &fresh,
        "the first packet relayed is the one sent after the bridge"
    );
    let report = relay.stop().await;
    assert_eq!(report.a_to_b.forwarded, 1, "none of the 20 stale packets");
}

#[tokio::test]
async fn a_packet_from_a_third_port_is_dropped() {
    let call = call().await;
    let intruder = socket().await;
    let relay = relays().relay(
        leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, false),
        leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
        RelayConfig::default(),
    );
    let injected = datagram(0, 1, 0, &[0x11; 160]);
    intruder
        .send_to(&injected, call.relay_a.local_addr().unwrap())
        .await
        .unwrap();
    let genuine = datagram(0, 2, 160, &[0x22; 160]);
    call.phone_a
        .send_to(&genuine, call.relay_a.local_addr().unwrap())
        .await
        .unwrap();
    // Loopback keeps order: had the injected packet been forwarded it would arrive first.
    let (bytes, _) = receive(&call.phone_b).await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x22; 160]);
    // Matching codecs: the payload is passed through.
    let report = relay.stop().await;
    assert_eq!(report.a_to_b.foreign_source, 1);
    assert_eq!(report.a_to_b.forwarded, 1);
    assert_eq!(report.a_to_b.latched, None);
}

#[tokio::test]
async fn latching_accepts_the_first_source_only_and_sends_back_to_it() {
    let call = call().await;
    // A's SDP signalled an address nobody sends from (a NAT hides the real one).
    let signalled: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let natted = call.phone_a; // the real source
    let latecomer = socket().await;
    let relay = relays().relay(
        leg(&call.relay_a, signalled, PCMU_LEG, true),
        leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
        RelayConfig::default(),
    );
    natted
        .send_to(
            &datagram(0, 1, 0, &[0x33; 160]),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x33; 160]);

    // A second source, even within the window, is dropped forever.
    latecomer
        .send_to(
            &datagram(0, 2, 160, &[0x44; 160]),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    natted
        .send_to(
            &datagram(0, 2, 160, &[0x55; 160]),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x55; 160]);

    // B's audio goes to the latched source, not to the signalled address.
    call.phone_b
        .send_to(
            &datagram(0, 9, 0, &[0x66; 160]),
            call.relay_b.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, from) = receive(&natted).await;
    assert_eq!(from, call.relay_a.local_addr().unwrap());
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x66; 160]);

    let report = relay.stop().await;
    assert_eq!(report.a_to_b.latched, Some(address(&natted)));
    assert_eq!(report.a_to_b.foreign_source, 1);
    assert_eq!(report.a_to_b.forwarded, 2);
}

#[tokio::test]
async fn without_a_first_source_in_the_window_latching_falls_back_to_the_signalled_address() {
    let call = call().await;
    let stranger = socket().await;
    let relay = relays().relay(
        leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, true),
        leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
        RelayConfig {
            latch_window: Duration::from_millis(50),
            ..RelayConfig::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    stranger
        .send_to(
            &datagram(0, 1, 0, &[0x77; 160]),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    call.phone_a
        .send_to(
            &datagram(0, 2, 160, &[0x88; 160]),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x88; 160]);
    let report = relay.stop().await;
    assert_eq!(report.a_to_b.foreign_source, 1);
    assert_eq!(report.a_to_b.latched, None);
}

#[tokio::test]
async fn malformed_datagrams_and_unknown_payload_types_are_dropped() {
    let call = call().await;
    let relay = relays().relay(
        leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, false),
        leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
        RelayConfig::default(),
    );
    for junk in [vec![0u8; 3], datagram(13, 1, 0, &[0]), vec![0x80; 3_000]] {
        call.phone_a
            .send_to(&junk, call.relay_a.local_addr().unwrap())
            .await
            .unwrap();
    }
    call.phone_a
        .send_to(
            &datagram(0, 2, 160, &[0x99; 160]),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x99; 160]);
    let report = relay.stop().await;
    assert_eq!(report.a_to_b.unusable, 3);
}

#[tokio::test]
async fn calls_sharing_a_relay_thread_stay_apart_and_a_stopped_relay_lets_go_of_its_sockets() {
    let relays = relays();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let call = call().await;
        let relay = relays.relay(
            leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, false),
            leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
            RelayConfig::default(),
        );
        calls.push((call, relay));
    }
    // A flood on the first call (from a third party: dropped after its receive) does not
    // keep the thread from the others: each other call's packet reaches its own phone B. (The
    // first call's own packet may find its socket's queue full of the flood.)
    let flooder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let flooded = calls[0].0.relay_a.local_addr().unwrap();
    for sequence in 0..5_000u16 {
        let _ = flooder.send_to(&datagram(0, sequence, 0, &[0; 160]), flooded);
    }
    for (index, (call, _)) in calls.iter().enumerate() {
        let payload = [index as u8; 160];
        call.phone_a
            .send_to(
                &datagram(0, 1, 0, &payload),
                call.relay_a.local_addr().unwrap(),
            )
            .await
            .unwrap();
    }
    for (index, (call, _)) in calls.iter().enumerate().skip(1) {
        let (bytes, _) = receive(&call.phone_b).await;
        assert_eq!(Packet::parse(&bytes).unwrap().payload, &[index as u8; 160]);
    }

    // Once stop returns, the relay no longer reads the legs' sockets: the next datagram
    // waits in the socket for its next reader, and nothing reaches phone B.
    let (call, relay) = calls.remove(1);
    let report = relay.stop().await;
    assert_eq!(report.a_to_b.forwarded, 1);
    call.phone_a
        .send_to(
            &datagram(0, 2, 160, &[0xEE; 160]),
            call.relay_a.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let reader = UdpSocket::from_std(call.relay_a.try_clone().unwrap()).unwrap();
    let mut buffer = [0u8; 2048];
    let (length, from) = timeout(Duration::from_secs(1), reader.recv_from(&mut buffer))
        .await
        .expect("the datagram is left for the next reader")
        .unwrap();
    assert_eq!(from, address(&call.phone_a));
    assert_eq!(
        Packet::parse(&buffer[..length]).unwrap().payload,
        &[0xEE; 160]
    );
    let mut nothing = [0u8; 2048];
    assert!(
        timeout(
            Duration::from_millis(200),
            call.phone_b.recv_from(&mut nothing)
        )
        .await
        .is_err(),
        "a stopped relay forwards nothing"
    );

    // Its slot is reused by the next relay on the thread.
    let next = self::call().await;
    let relay = relays.relay(
        leg(&next.relay_a, address(&next.phone_a), PCMU_LEG, false),
        leg(&next.relay_b, address(&next.phone_b), PCMU_LEG, false),
        RelayConfig::default(),
    );
    next.phone_b
        .send_to(
            &datagram(0, 1, 0, &[0x42; 160]),
            next.relay_b.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&next.phone_a).await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x42; 160]);
    assert_eq!(relay.stop().await.b_to_a.forwarded, 1);
    let flooded = calls.remove(0).1.stop().await;
    assert!(flooded.a_to_b.foreign_source > 0);
    assert!(flooded.a_to_b.forwarded <= 1);
}

#[tokio::test]
async fn dtmf_sent_for_a_party_is_played_as_telephone_events_into_the_other_legs_stream() {
    let call = call().await;
    let relay = relays().relay(
        leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, false),
        leg(&call.relay_b, address(&call.phone_b), PCMA_LEG, false),
        RelayConfig::default(),
    );
    // B's audio reaches A first, so the stream toward A has numbering to continue.
    call.phone_b
        .send_to(
            &datagram(8, 500, 9_000, &[0xD5; 160]),
            call.relay_b.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_a).await;
    let audio = Packet::parse(&bytes).unwrap().header;

    relay.send_dtmf(media::rtp::relay::Side::A, "1x#");
    let mut events = Vec::new();
    while events.len() < 14 {
        let (bytes, from) = receive(&call.phone_a).await;
        assert_eq!(from, call.relay_a.local_addr().unwrap());
        let packet = Packet::parse(&bytes).unwrap();
        assert_eq!(
            packet.header.payload_type,
            PayloadType(101),
            "A's telephone-event type"
        );
        events.push((
            packet.header,
            media::dtmf::EventPayload::decode(packet.payload).unwrap(),
        ));
    }
    // Two keys ('x' is no key), each 4 updates and 3 end packets sharing the key's start
    // timestamp, the first with the marker; numbering continues A's stream.
    for (index, (header, payload)) in events.iter().enumerate() {
        assert_eq!(header.ssrc, audio.ssrc);
        assert_eq!(
            header.sequence,
            audio.sequence.wrapping_add(1 + index as u16)
        );
        assert_eq!(header.marker, index % 7 == 0);
        assert_eq!(payload.end, index % 7 >= 4);
        let key = if index < 7 { '1' } else { '#' };
        assert_eq!(payload.event.key(), Some(key));
        assert_eq!(header.timestamp, events[index / 7 * 7].0.timestamp);
    }
    let gap = events[7]
        .0
        .timestamp
        .0
        .wrapping_sub(events[0].0.timestamp.0);
    assert!(
        (1_500..3_000).contains(&gap),
        "the second key starts ~160 ms of the wall clock later: {gap}"
    );

    // Then B's audio flows again, as a new talkspurt after the events.
    tokio::time::sleep(Duration::from_millis(50)).await;
    call.phone_b
        .send_to(
            &datagram(8, 501, 9_160, &[0xD5; 160]),
            call.relay_b.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_a).await;
    let resumed = Packet::parse(&bytes).unwrap().header;
    assert_eq!(resumed.payload_type, PayloadType::PCMU);
    assert_eq!(resumed.sequence, audio.sequence.wrapping_add(15));
    assert!(resumed.marker);
    let after_keys = resumed
        .timestamp
        .0
        .wrapping_sub(events[7].0.timestamp.0 + 800) as i32;
    assert!(
        after_keys >= 0,
        "audio resumes after the last key: {after_keys}"
    );
    let report = relay.stop().await;
    assert_eq!(
        report.b_to_a.forwarded, 16,
        "2 audio + 14 event packets toward A"
    );
}

#[tokio::test]
async fn a_leg_on_hold_is_sent_nothing_and_then_resumes_as_a_new_talkspurt() {
    let call = call().await;
    let relay = relays().relay(
        leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, false),
        leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
        RelayConfig::default(),
    );
    let to_relay_a = call.relay_a.local_addr().unwrap();
    let to_relay_b = call.relay_b.local_addr().unwrap();
    let audio = [0x55u8; 160];
    let b_sends = |sequence: u16| datagram(0, sequence, 160 * u32::from(sequence), &audio);

    // Before the hold, B's audio reaches A.
    call.phone_b.send_to(&b_sends(1), to_relay_b).await.unwrap();
    let (bytes, _) = receive(&call.phone_a).await;
    let before = Packet::parse(&bytes).unwrap().header;

    // A holds the call. The relay thread takes the command within a few ms; probes from B
    // show when: the first one that does not reach A.
    relay.hold(Side::A, true);
    let mut buffer = [0u8; 2048];
    let mut sequence = 2;
    let mut before = before;
    let mut forwarded_probes = 0;
    loop {
        call.phone_b
            .send_to(&b_sends(sequence), to_relay_b)
            .await
            .unwrap();
        sequence += 1;
        match timeout(
            Duration::from_millis(100),
            call.phone_a.recv_from(&mut buffer),
        )
        .await
        {
            Err(_) => break,
            Ok(received) => {
                let (length, _) = received.unwrap();
                before = Packet::parse(&buffer[..length]).unwrap().header;
                forwarded_probes += 1;
                assert!(forwarded_probes < 20, "the hold never took effect");
            }
        }
    }
    // Held: more of B's packets go nowhere, while A's (its music on hold) still reach B.
    for _ in 0..3 {
        call.phone_b
            .send_to(&b_sends(sequence), to_relay_b)
            .await
            .unwrap();
        sequence += 1;
    }
    call.phone_a
        .send_to(&datagram(0, 500, 80_000, &audio), to_relay_a)
        .await
        .unwrap();
    receive(&call.phone_b).await;
    assert!(
        timeout(
            Duration::from_millis(200),
            call.phone_a.recv_from(&mut buffer)
        )
        .await
        .is_err(),
        "a leg on hold is sent nothing"
    );

    // Resumed: the first packet toward A continues A's numbering as a new talkspurt whose
    // timestamp skipped the pause (over 300 ms passed since the last packet A got; at least
    // 200 ms = 1,600 samples are asserted).
    relay.hold(Side::A, false);
    let after = loop {
        call.phone_b
            .send_to(&b_sends(sequence), to_relay_b)
            .await
            .unwrap();
        sequence += 1;
        if let Ok(received) = timeout(
            Duration::from_millis(100),
            call.phone_a.recv_from(&mut buffer),
        )
        .await
        {
            let (length, _) = received.unwrap();
            break Packet::parse(&buffer[..length]).unwrap().header;
        }
        assert!(sequence < 100, "the stream never resumed");
    };
    assert!(after.marker, "the resumed stream starts a talkspurt");
    assert_eq!(after.ssrc, before.ssrc);
    assert_eq!(after.sequence.0, before.sequence.0.wrapping_add(1));
    let advanced = after.timestamp.0.wrapping_sub(before.timestamp.0);
    assert!(
        (160 + 1_600..160 + 8_000 * 10).contains(&advanced),
        "timestamp advanced by {advanced}"
    );

    let report = relay.stop().await;
    // Sent by B: 1 before, the probes, 3 held, then the resume probes; forwarded: the first,
    // the probes before the hold took effect, and the first after it ended.
    assert!(report.b_to_a.held >= 4, "{report:?}");
    assert_eq!(report.b_to_a.forwarded, 2 + forwarded_probes);
    assert_eq!(
        report.b_to_a.held + report.b_to_a.forwarded,
        u64::from(sequence) - 1
    );
    assert_eq!(report.a_to_b.forwarded, 1);
}

/// Sends `datagram` from `from` to `to` every 100 ms until `at` receives a packet, which is
/// returned: the way to see a command reach the relay thread without guessing how long it
/// takes.
async fn probe(from: &UdpSocket, to: SocketAddr, datagram: &[u8], at: &UdpSocket) -> Vec<u8> {
    let mut buffer = vec![0u8; 2048];
    for _ in 0..20 {
        from.send_to(datagram, to).await.unwrap();
        if let Ok(received) = timeout(Duration::from_millis(100), at.recv_from(&mut buffer)).await {
            let (length, _) = received.unwrap();
            buffer.truncate(length);
            return buffer;
        }
    }
    panic!("the relay never took the update");
}

/// Datagrams waiting in `socket`, read without waiting.
fn drain(socket: &UdpSocket) -> usize {
    let mut buffer = [0u8; 2048];
    std::iter::from_fn(|| socket.try_recv_from(&mut buffer).ok()).count()
}

#[tokio::test]
async fn a_leg_that_moves_to_a_new_address_and_codec_is_followed_and_its_old_address_dropped() {
    let call = call().await;
    let (old_rtcp, new_rtp, new_rtcp) = (socket().await, socket().await, socket().await);
    let relay_rtcp_a = relay_socket();
    let relay = relays().relay(
        Leg {
            rtcp: Some(RtcpEndpoint {
                socket: Arc::clone(&relay_rtcp_a),
                remote: address(&old_rtcp),
            }),
            ..leg(&call.relay_a, address(&call.phone_a), PCMU_LEG, false)
        },
        leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
        RelayConfig {
            rtcp_minimum_interval: Duration::from_millis(100),
            ..RelayConfig::default()
        },
    );
    let to_relay_a = call.relay_a.local_addr().unwrap();
    let to_relay_b = call.relay_b.local_addr().unwrap();
    let ulaw: Vec<u8> = (0..160).map(|index| (index * 3 % 256) as u8).collect();
    call.phone_b
        .send_to(&datagram(0, 1, 0, &ulaw), to_relay_b)
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_a).await;
    let before = Packet::parse(&bytes).unwrap().header;
    assert_eq!(before.payload_type, PayloadType::PCMU);

    // A's re-INVITE moved its media to another port and switched it to PCMA, with events on 96.
    relay.update(
        Side::A,
        LegSession {
            remote: address(&new_rtp),
            format: PCMA_LEG,
            remote_rtcp: address(&new_rtcp),
        },
    );
    let bytes = probe(
        &call.phone_b,
        to_relay_b,
        &datagram(0, 2, 160, &ulaw),
        &new_rtp,
    )
    .await;
    let packet = Packet::parse(&bytes).unwrap();
    assert_eq!(packet.header.payload_type, PayloadType::PCMA);
    let alaw = alaw_of(&ulaw);
    assert_eq!(
        packet.payload,
        alaw.as_slice(),
        "B's µ-law reaches A as A-law"
    );
    assert_eq!(
        packet.header.ssrc, before.ssrc,
        "the stream toward A goes on"
    );

    // The old address is a stranger now; A-law from the new one reaches B as µ-law. (Loopback
    // keeps order: had the old packet been forwarded it would arrive first.)
    call.phone_a
        .send_to(&datagram(0, 50, 8_000, &[0x77; 160]), to_relay_a)
        .await
        .unwrap();
    let from_new: Vec<u8> = (0..160).map(|index| (255 - index) as u8).collect();
    new_rtp
        .send_to(&datagram(8, 900, 40_000, &from_new), to_relay_a)
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    let packet = Packet::parse(&bytes).unwrap();
    assert_eq!(packet.header.payload_type, PayloadType::PCMU);
    let expected: Vec<u8> = from_new
        .iter()
        .map(|&code| codec::alaw_to_ulaw_code(code))
        .collect();
    assert_eq!(packet.payload, expected.as_slice());
    // Telephone-events of A's new payload type are mapped onto B's.
    let event = [4u8, 0x0A, 0x00, 0xA0];
    new_rtp
        .send_to(&datagram(96, 901, 40_160, &event), to_relay_a)
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    assert_eq!(
        Packet::parse(&bytes).unwrap().header.payload_type,
        PayloadType(101)
    );

    // Nothing more reaches the old address: what B sends now all lands at the new one (a
    // loopback send queues at the receiver before it returns, so the old socket is checked
    // once the new one has everything).
    drain(&call.phone_a);
    for sequence in 3..6u16 {
        call.phone_b
            .send_to(
                &datagram(0, sequence, 160 * u32::from(sequence), &ulaw),
                to_relay_b,
            )
            .await
            .unwrap();
        receive(&new_rtp).await;
    }
    assert_eq!(
        drain(&call.phone_a),
        0,
        "the old address got media after the move"
    );

    // RTCP follows to the new RTCP address.
    let (bytes, _) = timeout(Duration::from_secs(2), async {
        let mut buffer = vec![0u8; 2048];
        let (length, from) = new_rtcp.recv_from(&mut buffer).await.unwrap();
        buffer.truncate(length);
        (buffer, from)
    })
    .await
    .expect("an RTCP report at the new address");
    assert!(matches!(bytes[1], 200 | 201), "an SR or RR: {bytes:?}");

    let report = relay.stop().await;
    assert!(report.a_to_b.foreign_source >= 1, "{report:?}");
    assert_eq!(report.a_to_b.forwarded, 2);
}

#[tokio::test]
async fn a_latching_leg_that_moves_latches_onto_its_new_source_and_drops_the_old_one() {
    let call = call().await;
    // A's SDP signals an address nobody sends from (a NAT hides the real one), before and
    // after its re-INVITE.
    let signalled: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let natted = call.phone_a;
    let moved = socket().await;
    let relay = relays().relay(
        leg(&call.relay_a, signalled, PCMU_LEG, true),
        leg(&call.relay_b, address(&call.phone_b), PCMU_LEG, false),
        RelayConfig::default(),
    );
    let to_relay_a = call.relay_a.local_addr().unwrap();
    natted
        .send_to(&datagram(0, 1, 0, &[0x33; 160]), to_relay_a)
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x33; 160]);

    relay.update(
        Side::A,
        LegSession {
            remote: "127.0.0.1:11".parse().unwrap(),
            format: PCMU_LEG,
            remote_rtcp: "127.0.0.1:12".parse().unwrap(),
        },
    );
    // Until the relay takes the update, the new source is a stranger; then it is latched.
    let bytes = probe(
        &moved,
        to_relay_a,
        &datagram(0, 2, 160, &[0x66; 160]),
        &call.phone_b,
    )
    .await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x66; 160]);

    // The old source is dropped from now on, and B's audio goes to the new one.
    natted
        .send_to(&datagram(0, 2, 160, &[0x34; 160]), to_relay_a)
        .await
        .unwrap();
    moved
        .send_to(&datagram(0, 3, 320, &[0x67; 160]), to_relay_a)
        .await
        .unwrap();
    let (bytes, _) = receive(&call.phone_b).await;
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x67; 160]);
    call.phone_b
        .send_to(
            &datagram(0, 9, 0, &[0x42; 160]),
            call.relay_b.local_addr().unwrap(),
        )
        .await
        .unwrap();
    let (bytes, from) = receive(&moved).await;
    assert_eq!(from, to_relay_a);
    assert_eq!(Packet::parse(&bytes).unwrap().payload, &[0x42; 160]);
    assert_eq!(drain(&natted), 0);

    let report = relay.stop().await;
    assert_eq!(report.a_to_b.latched, Some(address(&moved)));
    assert!(report.a_to_b.foreign_source >= 1, "{report:?}");
}

/// `ulaw` as G.711 A-law, as the media layer's transcoding gives it.
fn alaw_of(ulaw: &[u8]) -> Vec<u8> {
    let mut alaw = vec![0; ulaw.len()];
    codec::ulaw_to_alaw(ulaw, &mut alaw);
    alaw
}
