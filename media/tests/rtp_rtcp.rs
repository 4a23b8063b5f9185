//! RTCP on relayed legs with real UDP sockets on 127.0.0.1 and a 200 ms minimum interval:
//! the peer receives an SR with the counts of what the relay sent it (and an RR where the
//! relay sent nothing), and the peer's RR, with loss, jitter and LSR/DLSR, shows up in the
//! relay's report with the round-trip time, while a forgery from another address and junk are
//! dropped. RTCP multiplexed on the RTP port (RFC 5761) is read and sent there, never relayed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use media::rtp::forward::LegFormat;
use media::rtp::packet::{self, Header};
use media::rtp::relay::{Leg, RelayConfig, Relays, RelaysConfig, RtcpEndpoint};
use media::rtp::rtcp::{self, Report, ReportBlock, SenderInfo};
use media::rtp::{Codec, Packet, PayloadType, RtpTimestamp, SeqNo, Ssrc};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const PCMU_LEG: LegFormat = LegFormat {
    codec: Codec::Pcmu,
    payload_type: PayloadType::PCMU,
    telephone_event: None,
};

/// One side's pair of sockets.
struct Pair {
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
}

async fn pair() -> Pair {
    let bind = || async { Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()) };
    Pair {
        rtp: bind().await,
        rtcp: bind().await,
    }
}

fn address(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().unwrap()
}

/// The relay's pair, as the port pool hands them out: std, non-blocking.
struct RelayPair {
    rtp: Arc<std::net::UdpSocket>,
    rtcp: Arc<std::net::UdpSocket>,
}

fn relay_pair() -> RelayPair {
    let bind = || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        Arc::new(socket)
    };
    RelayPair {
        rtp: bind(),
        rtcp: bind(),
    }
}

fn relays() -> Relays {
    Relays::spawn(RelaysConfig { threads: 1 }).unwrap()
}

fn leg(relay: &RelayPair, phone: &Pair) -> Leg {
    Leg {
        socket: Arc::clone(&relay.rtp),
        remote: address(&phone.rtp),
        format: PCMU_LEG,
        latching: false,
        rtcp: Some(RtcpEndpoint {
            socket: Arc::clone(&relay.rtcp),
            remote: address(&phone.rtcp),
        }),
    }
}

fn config() -> RelayConfig {
    RelayConfig {
        rtcp_minimum_interval: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

fn audio(sequence: u16) -> Vec<u8> {
    let header = Header {
        payload_type: PayloadType::PCMU,
        marker: false,
        sequence: SeqNo(sequence),
        timestamp: RtpTimestamp(u32::from(sequence) * 160),
        ssrc: Ssrc(0xABCD),
    };
    let mut buffer = Vec::new();
    packet::write(&header, &[0x55; 160], &mut buffer);
    buffer
}

/// Receives one datagram within two seconds.
async fn receive(socket: &UdpSocket) -> Vec<u8> {
    let mut buffer = vec![0u8; 2048];
    let (length, _) = timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .expect("a datagram within two seconds")
        .unwrap();
    buffer.truncate(length);
    buffer
}

/// Reads RTCP on `socket` until a compound packet whose first report matches `wanted`.
async fn first_report(socket: &UdpSocket, wanted: impl Fn(&Report) -> bool) -> (Report, Vec<u8>) {
    for _ in 0..20 {
        let datagram = receive(socket).await;
        let reports = rtcp::parse(&datagram).unwrap();
        if let Some(report) = reports.into_iter().next().filter(|report| wanted(report)) {
            return (report, datagram);
        }
    }
    panic!("no matching report in 20 compound packets");
}

/// Whether a compound packet holds an SDES packet (type 202) after its first packet.
fn has_sdes(datagram: &[u8]) -> bool {
    let first_length = (usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) + 1) * 4;
    datagram.get(first_length + 1) == Some(&rtcp::SOURCE_DESCRIPTION)
}

#[tokio::test]
async fn the_peer_gets_an_sr_with_the_relayed_counts_and_the_sender_gets_an_rr() {
    let (relay_a, relay_b, phone_a, phone_b) =
        (relay_pair(), relay_pair(), pair().await, pair().await);
    let relay = relays().relay(leg(&relay_a, &phone_a), leg(&relay_b, &phone_b), config());
    for sequence in 1..=5 {
        phone_a
            .rtp
            .send_to(&audio(sequence), relay_a.rtp.local_addr().unwrap())
            .await
            .unwrap();
    }
    let mut relayed_ssrc = None;
    for _ in 0..5 {
        let bytes = receive(&phone_b.rtp).await;
        relayed_ssrc = Some(Packet::parse(&bytes).unwrap().header.ssrc);
    }
    // Phone B was sent five 160-octet packets: its SR says so, from the same SSRC.
    let (report, datagram) = first_report(
        &phone_b.rtcp,
        |report| matches!(report, Report::Sender { info, .. } if info.packet_count == 5),
    )
    .await;
    let Report::Sender { ssrc, info, blocks } = report else {
        unreachable!("filtered for an SR");
    };
    assert_eq!(Some(ssrc), relayed_ssrc);
    assert_eq!((info.packet_count, info.octet_count), (5, 800));
    assert!(blocks.is_empty(), "phone B sent nothing to report on");
    assert!(has_sdes(&datagram), "the compound packet carries a CNAME");
    // Phone A was sent nothing: an RR whose block reports on its stream up to sequence 5.
    let (report, datagram) = first_report(
        &phone_a.rtcp,
        |report| matches!(report, Report::Receiver { blocks, .. } if !blocks.is_empty()),
    )
    .await;
    let Report::Receiver { blocks, .. } = report else {
        unreachable!("filtered for an RR");
    };
    assert_eq!(blocks[0].ssrc, Ssrc(0xABCD));
    assert_eq!(blocks[0].extended_highest, 5);
    assert_eq!(blocks[0].cumulative_lost, 0);
    assert!(has_sdes(&datagram));
    let report = relay.stop().await;
    assert!(report.rtcp_b.sender_reports_sent >= 1);
    assert!(report.rtcp_a.receiver_reports_sent >= 1);
}

#[tokio::test]
async fn the_peers_rr_is_recorded_with_loss_jitter_and_round_trip_time() {
    let (relay_a, relay_b, phone_a, phone_b) =
        (relay_pair(), relay_pair(), pair().await, pair().await);
    let mut relay = relays().relay(leg(&relay_a, &phone_a), leg(&relay_b, &phone_b), config());
    phone_a
        .rtp
        .send_to(&audio(1), relay_a.rtp.local_addr().unwrap())
        .await
        .unwrap();
    receive(&phone_b.rtp).await;
    let (report, _) = first_report(&phone_b.rtcp, |report| {
        matches!(report, Report::Sender { .. })
    })
    .await;
    let Report::Sender { ssrc, info, .. } = report else {
        unreachable!("filtered for an SR");
    };
    // Phone B answers at once, but claims it held our SR 250 ms and that the SR was sent
    // 500 ms before its NTP timestamp says: the relay must compute about 250 ms.
    let last_sender_report = ((info.ntp_timestamp >> 16) as u32).wrapping_sub(65_536 / 2);
    let block = ReportBlock {
        ssrc,
        fraction_lost: 64,
        cumulative_lost: 7,
        extended_highest: 1,
        jitter: 42,
        last_sender_report,
        delay_since_last_sender_report: 65_536 / 4,
    };
    let mut datagram = Vec::new();
    rtcp::write_receiver_report(Ssrc(0xB0B), &[block], &mut datagram);
    rtcp::write_cname(Ssrc(0xB0B), "phone-b", &mut datagram);
    // A third party on another address forges the same report: not accepted.
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    stranger
        .send_to(&datagram, relay_b.rtcp.local_addr().unwrap())
        .await
        .unwrap();
    // Junk next: dropped and counted, the relay keeps going.
    phone_b
        .rtcp
        .send_to(&[0x80, 201, 0, 9], relay_b.rtcp.local_addr().unwrap())
        .await
        .unwrap();
    phone_b
        .rtcp
        .send_to(&datagram, relay_b.rtcp.local_addr().unwrap())
        .await
        .unwrap();
    let report = timeout(Duration::from_secs(2), async {
        loop {
            let report = relay.changed_report().await.unwrap();
            if report.rtcp_b.peer_reception.is_some() {
                return report;
            }
        }
    })
    .await
    .expect("the RR is recorded within two seconds");
    let reception = report.rtcp_b.peer_reception.unwrap();
    assert_eq!(reception.fraction_lost, 64);
    assert_eq!(reception.cumulative_lost, 7);
    assert_eq!(reception.jitter, 42);
    let round_trip = reception.round_trip_time.unwrap();
    assert!(
        round_trip >= Duration::from_millis(249) && round_trip < Duration::from_millis(450),
        "{round_trip:?}"
    );
    assert_eq!(report.rtcp_b.malformed, 2, "the forgery and the junk");
    assert_eq!(report.rtcp_b.reports_received, 1);
    // An SR from phone B is recorded too.
    let phone_info = SenderInfo {
        ntp_timestamp: 0x0000_1111_2222_0000,
        rtp_timestamp: RtpTimestamp(0),
        packet_count: 3,
        octet_count: 480,
    };
    let mut datagram = Vec::new();
    rtcp::write_sender_report(Ssrc(0xB0B), &phone_info, &[], &mut datagram);
    phone_b
        .rtcp
        .send_to(&datagram, relay_b.rtcp.local_addr().unwrap())
        .await
        .unwrap();
    let report = timeout(Duration::from_secs(2), async {
        loop {
            let report = relay.changed_report().await.unwrap();
            if report.rtcp_b.peer_sender.is_some() {
                return report;
            }
        }
    })
    .await
    .expect("the SR is recorded within two seconds");
    assert_eq!(report.rtcp_b.peer_sender, Some(phone_info));
    assert_eq!(relay.latest_report().rtcp_b.peer_sender, Some(phone_info));
    relay.stop().await;
}

#[tokio::test]
async fn rtcp_multiplexed_on_the_rtp_port_is_read_there_and_sent_there_but_never_relayed() {
    let (relay_a, relay_b, phone_a, phone_b) =
        (relay_pair(), relay_pair(), pair().await, pair().await);
    // Leg A multiplexes (RFC 5761): its RTCP endpoint is its RTP socket on both sides.
    let muxed = Leg {
        rtcp: Some(RtcpEndpoint {
            socket: Arc::clone(&relay_a.rtp),
            remote: address(&phone_a.rtp),
        }),
        ..leg(&relay_a, &phone_a)
    };
    let mut relay = relays().relay(muxed, leg(&relay_b, &phone_b), config());
    let to_relay = relay_a.rtp.local_addr().unwrap();
    for sequence in 1..=3 {
        phone_a
            .rtp
            .send_to(&audio(sequence), to_relay)
            .await
            .unwrap();
    }
    let block = ReportBlock {
        ssrc: Ssrc(1),
        fraction_lost: 0,
        cumulative_lost: 3,
        extended_highest: 0,
        jitter: 0,
        last_sender_report: 0,
        delay_since_last_sender_report: 0,
    };
    let mut datagram = Vec::new();
    rtcp::write_receiver_report(Ssrc(0xA1), &[block], &mut datagram);
    phone_a.rtp.send_to(&datagram, to_relay).await.unwrap();
    phone_a.rtp.send_to(&audio(4), to_relay).await.unwrap();

    // Phone B gets the four audio packets.
    for _ in 1..=4 {
        let bytes = receive(&phone_b.rtp).await;
        let header = Packet::parse(&bytes).unwrap().header;
        assert_eq!(header.payload_type, PayloadType::PCMU);
    }
    // Our reports to A arrive on A's RTP port; A's own socket pair's RTCP port hears nothing.
    let (report, _) = first_report(
        &phone_a.rtp,
        |report| matches!(report, Report::Receiver { blocks, .. } if !blocks.is_empty()),
    )
    .await;
    let Report::Receiver { blocks, .. } = report else {
        unreachable!("filtered for an RR");
    };
    assert_eq!(blocks[0].ssrc, Ssrc(0xABCD));
    let mut buffer = [0u8; 64];
    assert!(phone_a.rtcp.try_recv_from(&mut buffer).is_err());
    // A's report was read as RTCP: recorded, and not counted as unusable media.
    let report = timeout(Duration::from_secs(2), async {
        loop {
            let report = relay.changed_report().await.unwrap();
            if report.rtcp_a.reports_received >= 1 {
                return report;
            }
        }
    })
    .await
    .expect("A's RR is recorded within two seconds");
    assert_eq!(report.rtcp_a.malformed, 0);
    assert_eq!(
        report.a_to_b.unusable, 0,
        "the report was not taken for media"
    );
    let report = relay.stop().await;
    assert_eq!(report.a_to_b.forwarded, 4);
    assert_eq!(report.rtcp_a.reports_received, 1);
}
