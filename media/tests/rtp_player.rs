//! The prompt player with real UDP sockets on 127.0.0.1: packets of one stream arrive in
//! order with timestamps 160 apart and roughly 20 ms apart, loops repeat the audio, the last
//! packet is padded, A-law calls get transcoded audio, stop ends a prompt, a redirected prompt
//! goes on at its new address in its new codec, and one player serves many streams at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::codec;
use media::rtp::player::{FinishReason, Loops, Player, PlayerConfig, PlayerError, Prompt};
use media::rtp::{Codec, Packet, PayloadType, RtpTimestamp, Sender, SeqNo, Ssrc};
use tokio::net::UdpSocket;
use tokio::time::timeout;

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// The call's socket, as the port pool hands them out: std, non-blocking.
fn source_socket() -> Arc<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    Arc::new(socket)
}

async fn receive(socket: &UdpSocket) -> (Vec<u8>, Instant) {
    let mut buffer = vec![0u8; 2048];
    let (length, _) = timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .expect("a packet within two seconds")
        .unwrap();
    buffer.truncate(length);
    (buffer, Instant::now())
}

fn prompt(
    socket: &Arc<std::net::UdpSocket>,
    destination: SocketAddr,
    audio: Vec<u8>,
    loops: Loops,
) -> Prompt {
    Prompt {
        socket: Arc::clone(socket),
        destination,
        audio: audio.into(),
        codec: Codec::Pcmu,
        payload_type: PayloadType::PCMU,
        loops,
        sender: Sender::new(Ssrc(42), SeqNo(65_530), RtpTimestamp(u32::MAX - 500)),
    }
}

#[tokio::test]
async fn one_stream_is_paced_in_order_with_160_tick_timestamps_and_loops() {
    let player = Player::spawn(PlayerConfig::default());
    let source = source_socket();
    let phone = socket().await;
    // Ten packets' worth of audio, each packet's octets distinct.
    let audio: Vec<u8> = (0..1_600)
        .map(|index| (index / 160 * 20 + index % 7) as u8)
        .collect();
    let mut playback = player
        .play(prompt(
            &source,
            phone.local_addr().unwrap(),
            audio.clone(),
            Loops::Times(2),
        ))
        .unwrap();
    let mut packets = Vec::new();
    for _ in 0..20 {
        packets.push(receive(&phone).await);
    }
    let finished = playback.finished().await.unwrap();
    assert_eq!(finished.reason, FinishReason::Completed);
    assert_eq!(finished.packets_sent, 20);
    for (index, (bytes, _)) in packets.iter().enumerate() {
        let packet = Packet::parse(bytes).unwrap();
        assert_eq!(packet.header.ssrc, Ssrc(42));
        assert_eq!(packet.header.payload_type, PayloadType::PCMU);
        assert_eq!(
            packet.header.sequence,
            SeqNo(65_530).wrapping_add(index as u16)
        );
        assert_eq!(
            packet.header.timestamp,
            RtpTimestamp(u32::MAX - 500).wrapping_add(160 * index as u32)
        );
        assert_eq!(packet.header.marker, index == 0);
        let offset = (index % 10) * 160;
        assert_eq!(
            packet.payload,
            &audio[offset..offset + 160],
            "packet {index}"
        );
    }
    // 19 intervals of 20 ms; the machine is shared, so only a generous bound.
    let span = packets[19].1 - packets[0].1;
    let expected = Duration::from_millis(19 * 20);
    assert!(
        span >= expected * 2 / 5 && span <= expected * 2,
        "20 packets spanned {span:?}"
    );
    // The returned sender continues the numbering.
    assert_eq!(
        finished.sender.next_timestamp(),
        RtpTimestamp(u32::MAX - 500).wrapping_add(160 * 20)
    );
    // Nothing more arrives.
    let mut buffer = [0u8; 256];
    assert!(
        timeout(Duration::from_millis(100), phone.recv_from(&mut buffer))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_last_packet_is_padded_and_pcma_calls_get_a_law() {
    let player = Player::spawn(PlayerConfig::default());
    let source = source_socket();
    let phone = socket().await;
    let audio: Vec<u8> = (0..200).map(|index| index as u8).collect();
    let mut alaw_prompt = prompt(
        &source,
        phone.local_addr().unwrap(),
        audio.clone(),
        Loops::Times(1),
    );
    alaw_prompt.codec = Codec::Pcma;
    alaw_prompt.payload_type = PayloadType::PCMA;
    let mut playback = player.play(alaw_prompt).unwrap();
    let first = Packet::parse(&receive(&phone).await.0)
        .unwrap()
        .payload
        .to_vec();
    let second = Packet::parse(&receive(&phone).await.0)
        .unwrap()
        .payload
        .to_vec();
    let expected = alaw_of(&audio);
    assert_eq!(first, &expected[..160]);
    assert_eq!(&second[..40], &expected[160..]);
    assert!(second[40..]
        .iter()
        .all(|&code| code == Codec::Pcma.silence()));
    assert_eq!(second.len(), 160);
    assert_eq!(playback.finished().await.unwrap().packets_sent, 2);
}

#[tokio::test]
async fn stop_ends_a_looping_prompt() {
    let player = Player::spawn(PlayerConfig::default());
    let source = source_socket();
    let phone = socket().await;
    let mut playback = player
        .play(prompt(
            &source,
            phone.local_addr().unwrap(),
            vec![0x55; 160],
            Loops::Forever,
        ))
        .unwrap();
    for _ in 0..3 {
        receive(&phone).await;
    }
    playback.stop();
    let finished = playback.finished().await.unwrap();
    assert_eq!(finished.reason, FinishReason::Stopped);
    assert!(finished.packets_sent >= 3);
    // Dropping a playback stops it too; an empty prompt or zero loops finishes at once.
    let dropped = player
        .play(prompt(
            &source,
            phone.local_addr().unwrap(),
            vec![0; 160],
            Loops::Forever,
        ))
        .unwrap();
    drop(dropped);
    let mut empty = player
        .play(prompt(
            &source,
            phone.local_addr().unwrap(),
            Vec::new(),
            Loops::Forever,
        ))
        .unwrap();
    assert_eq!(empty.finished().await.unwrap().packets_sent, 0);
    let mut zero = player
        .play(prompt(
            &source,
            phone.local_addr().unwrap(),
            vec![0; 160],
            Loops::Times(0),
        ))
        .unwrap();
    assert_eq!(zero.finished().await.unwrap().packets_sent, 0);
}

#[tokio::test]
async fn a_redirected_prompt_goes_on_at_the_new_address_in_the_new_codec() {
    let player = Player::spawn(PlayerConfig::default());
    let source = source_socket();
    let (old, new) = (socket().await, socket().await);
    let audio: Vec<u8> = (0..160 * 50).map(|index| (index % 251) as u8).collect();
    let mut playback = player
        .play(prompt(
            &source,
            old.local_addr().unwrap(),
            audio.clone(),
            Loops::Times(1),
        ))
        .unwrap();
    let (bytes, _) = receive(&old).await;
    let before = Packet::parse(&bytes).unwrap().header;
    playback.redirect(new.local_addr().unwrap(), Codec::Pcma, PayloadType::PCMA);
    let (bytes, _) = receive(&new).await;
    let packet = Packet::parse(&bytes).unwrap();
    assert_eq!(packet.header.payload_type, PayloadType::PCMA);
    assert_eq!(packet.header.ssrc, before.ssrc, "the same stream goes on");
    let packets_before = packet.header.sequence.0.wrapping_sub(before.sequence.0);
    assert!(packets_before >= 1);
    let at = usize::from(packets_before) * 160;
    let alaw = alaw_of(&audio[at..at + 160]);
    assert_eq!(
        packet.payload,
        alaw.as_slice(),
        "the audio goes on where it was"
    );
    // Whatever the old address still got was sent before the redirect: once the new one
    // hears the stream, the old one hears nothing more.
    while old.try_recv_from(&mut [0u8; 512]).is_ok() {}
    receive(&new).await;
    receive(&new).await;
    assert!(old.try_recv_from(&mut [0u8; 512]).is_err());
    playback.stop();
    assert_eq!(
        playback.finished().await.unwrap().reason,
        FinishReason::Stopped
    );
}

#[tokio::test]
async fn one_player_serves_many_streams_each_in_order() {
    let player = Player::spawn(PlayerConfig::default());
    let phone = socket().await;
    let destination = phone.local_addr().unwrap();
    let mut playbacks = Vec::new();
    for stream in 0..30u32 {
        let source = source_socket();
        let mut prompt = prompt(
            &source,
            destination,
            vec![stream as u8; 160 * 5],
            Loops::Times(1),
        );
        prompt.sender = Sender::new(Ssrc(stream), SeqNo(100), RtpTimestamp(0));
        playbacks.push(player.play(prompt).unwrap());
    }
    let mut by_stream: HashMap<Ssrc, Vec<(SeqNo, RtpTimestamp, u8)>> = HashMap::new();
    for _ in 0..150 {
        let (bytes, _) = receive(&phone).await;
        let packet = Packet::parse(&bytes).unwrap();
        by_stream.entry(packet.header.ssrc).or_default().push((
            packet.header.sequence,
            packet.header.timestamp,
            packet.payload[0],
        ));
    }
    assert_eq!(by_stream.len(), 30);
    for (ssrc, packets) in &by_stream {
        assert_eq!(packets.len(), 5);
        for (index, &(sequence, timestamp, octet)) in packets.iter().enumerate() {
            assert_eq!(sequence, SeqNo(100 + index as u16));
            assert_eq!(timestamp, RtpTimestamp(160 * index as u32));
            assert_eq!(u32::from(octet), ssrc.0);
        }
    }
    for playback in &mut playbacks {
        assert_eq!(
            playback.finished().await.unwrap().reason,
            FinishReason::Completed
        );
    }
    let statistics = player.statistics();
    assert_eq!(statistics.packets_sent, 150);
    assert_eq!(statistics.send_failures, 0);
}

#[tokio::test]
async fn an_abandoned_wait_for_the_end_can_be_resumed() {
    let player = Player::spawn(PlayerConfig::default());
    let source = source_socket();
    let phone = socket().await;
    let mut playback = player
        .play(prompt(
            &source,
            phone.local_addr().unwrap(),
            vec![0x55; 1600],
            Loops::Forever,
        ))
        .unwrap();
    // A select! that gives up on the wait (what a call does when it stops a prompt)...
    tokio::select! {
        _ = playback.finished() => panic!("a looping prompt ended by itself"),
        _ = tokio::time::sleep(Duration::from_millis(60)) => playback.stop(),
    }
    // ...still gets the end, with the sender to continue the stream.
    let finished = playback.finished().await.unwrap();
    assert_eq!(finished.reason, FinishReason::Stopped);
    assert!(finished.packets_sent >= 2);
    assert_eq!(finished.sender.packets_sent(), finished.packets_sent);
    assert!(matches!(
        playback.finished().await,
        Err(PlayerError::NotRunning)
    ));
}

/// `ulaw` as G.711 A-law, as the media layer's transcoding gives it.
fn alaw_of(ulaw: &[u8]) -> Vec<u8> {
    let mut alaw = vec![0; ulaw.len()];
    codec::ulaw_to_alaw(ulaw, &mut alaw);
    alaw
}
