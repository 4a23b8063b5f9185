//! RFC 4733 DTMF over real UDP sockets: a key press sent as its sequence of telephone-event
//! packets (marker on the first, three end packets) is reported exactly once by the receiver,
//! and two presses of the same key are two events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::time::Duration;

use media::dtmf::{Event, EventReceiver, EventSender, END_REPETITIONS};
use media::rtp::packet;
use media::rtp::{Packet, PayloadType, RtpTimestamp, Sender, SeqNo, Ssrc};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const TELEPHONE_EVENT: PayloadType = PayloadType(101);

#[tokio::test]
async fn key_presses_cross_a_socket_and_are_reported_once_each() {
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tandem = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sender = Sender::new(Ssrc(5), SeqNo(10), RtpTimestamp(8_000));
    let mut buffer = Vec::new();
    let mut sent_packets = 0;
    for key in ['5', '5', '#'] {
        let start = sender.next_timestamp();
        let mut event = EventSender::new(Event::from_key(key).unwrap(), 800, 10);
        while let Some((marker, payload)) = event.next_payload() {
            let header = sender.stamp_event(TELEPHONE_EVENT, start, marker);
            packet::write(&header, &payload.encode(), &mut buffer);
            phone
                .send_to(&buffer, tandem.local_addr().unwrap())
                .await
                .unwrap();
            sent_packets += 1;
        }
        // Audio (or the next event) resumes after the event's duration.
        sender.start_talkspurt(800);
    }
    assert_eq!(sent_packets, 3 * (4 + usize::from(END_REPETITIONS)));

    let mut receiver = EventReceiver::new();
    let mut keys = Vec::new();
    let mut last_sequence = None;
    let mut datagram = vec![0u8; 2048];
    for _ in 0..sent_packets {
        let (length, _) = timeout(Duration::from_secs(1), tandem.recv_from(&mut datagram))
            .await
            .unwrap()
            .unwrap();
        let packet = Packet::parse(&datagram[..length]).unwrap();
        assert_eq!(packet.header.payload_type, TELEPHONE_EVENT);
        if let Some(previous) = last_sequence.replace(packet.header.sequence) {
            assert_eq!(packet.header.sequence, SeqNo::wrapping_add(previous, 1));
        }
        if let Some(received) = receiver
            .handle_payload(packet.header.timestamp, packet.payload)
            .unwrap()
        {
            assert!(
                packet.header.marker,
                "an event is reported on its first packet"
            );
            keys.push(received.event.key().unwrap());
        }
    }
    assert_eq!(keys, ['5', '5', '#']);
}
