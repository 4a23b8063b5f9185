//! The RTP port pool over a tiny range with real sockets: even RTP + odd RTCP pairs, ports
//! bound elsewhere are skipped, exhaustion is a typed error, dropping a lease frees the pair,
//! and released pairs rest with their sockets open and are reused only if nothing arrived.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use media::ports::{PortError, PortPool, Rtcp};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A base port whose next eight ports are free right now: probing keeps parallel test runs
/// (and other programs) from making this test flaky. The tests of this binary run in
/// parallel too, so each call starts past the ranges handed out before: two tests never
/// probe, release and then both take the same range.
fn free_range() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(42_000);
    loop {
        let base = NEXT.fetch_add(16, Ordering::Relaxed);
        assert!(base < 60_000, "no free port range on 127.0.0.1");
        let all_free = (base..base + 8).all(|port| UdpSocket::bind((LOCALHOST, port)).is_ok());
        if all_free {
            return base;
        }
    }
}

#[test]
fn pairs_are_even_and_odd_skip_busy_ports_and_run_out_cleanly() {
    let base = free_range();
    // An odd first port: the pool starts at the next even one. No resting: released pairs
    // are closed.
    let pool = PortPool::with_resting(LOCALHOST, base - 1, base + 5, 0, Duration::ZERO).unwrap();
    assert_eq!(pool.capacity(), 3);
    // Someone else holds the RTCP port of the second pair.
    let squatter = UdpSocket::bind((LOCALHOST, base + 3)).unwrap();

    let first = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(first.port(), base);
    assert_eq!(first.rtp().local_addr().unwrap().port(), base);
    assert_eq!(first.rtcp().unwrap().local_addr().unwrap().port(), base + 1);
    let second = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(
        second.port(),
        base + 4,
        "the pair with a busy port is skipped"
    );
    assert_eq!(pool.leased(), 2);
    assert!(matches!(
        pool.allocate(Rtcp::OwnPort),
        Err(PortError::Exhausted { .. })
    ));

    // Dropping a lease frees its pair; so does the squatter leaving.
    drop(first);
    assert_eq!(pool.leased(), 1);
    drop(squatter);
    let third = pool.allocate(Rtcp::OwnPort).unwrap();
    let fourth = pool.allocate(Rtcp::OwnPort).unwrap();
    let mut ports = [third.port(), fourth.port()];
    ports.sort_unstable();
    assert_eq!(ports, [base, base + 2]);
    assert_eq!(third.local_addr().port(), third.port());
}

#[test]
fn the_leased_sockets_are_non_blocking_and_carry_traffic() {
    let base = free_range();
    let pool = PortPool::new(LOCALHOST, base, base + 1).unwrap();
    let ports = pool.allocate(Rtcp::OwnPort).unwrap();
    let mut buffer = [0u8; 8];
    let empty = ports.rtp().recv_from(&mut buffer).unwrap_err();
    assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
    let peer = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    peer.send_to(b"rtp", ports.local_addr()).unwrap();
    // The socket stays non-blocking (the pool relies on its holders keeping it so): wait for
    // the datagram by polling.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (length, from) = loop {
        match ports.rtp().recv_from(&mut buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "no datagram");
                std::thread::sleep(Duration::from_millis(1));
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(&buffer[..length], b"rtp");
    assert_eq!(from, peer.local_addr().unwrap());
}

#[test]
fn ranges_without_a_pair_are_rejected() {
    assert!(matches!(
        PortPool::new(LOCALHOST, 20_001, 20_002),
        Err(PortError::EmptyRange { .. })
    ));
    assert!(matches!(
        PortPool::new(LOCALHOST, 30_000, 20_000),
        Err(PortError::EmptyRange { .. })
    ));
    assert!(matches!(
        PortPool::new(LOCALHOST, 65_535, 65_535),
        Err(PortError::EmptyRange { .. })
    ));
    assert_eq!(
        PortPool::new(LOCALHOST, 65_534, 65_535).unwrap().capacity(),
        1
    );
}

/// A pool of three pairs whose released pairs rest `rest` while at most four sockets (two
/// pairs) are open.
fn resting_pool(rest: Duration) -> (PortPool, u16) {
    let base = free_range();
    let pool = PortPool::with_resting(LOCALHOST, base, base + 5, 4, rest).unwrap();
    (pool, base)
}

#[test]
fn a_released_pair_rests_then_serves_again_with_the_same_sockets() {
    let (pool, base) = resting_pool(Duration::ZERO);
    let first = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(first.port(), base);
    // Traffic of the first call, some of it still queued when the call ends.
    let peer = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    peer.send_to(b"late", first.local_addr()).unwrap();
    drop(first);
    assert_eq!((pool.leased(), pool.resting()), (0, 1));

    let again = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(
        again.port(),
        base,
        "the rested pair, not the next fresh one"
    );
    assert_eq!(pool.reused(), 1);
    assert_eq!((pool.leased(), pool.resting()), (1, 0));
    // Nothing of the last call is left to read, and the sockets are still non-blocking.
    let mut buffer = [0u8; 8];
    let empty = again.rtp().recv_from(&mut buffer).unwrap_err();
    assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
    // They carry traffic.
    peer.send_to(b"next", again.local_addr()).unwrap();
    let mut received = None;
    for _ in 0..1000 {
        if let Ok((length, _)) = again.rtp().recv_from(&mut buffer) {
            received = Some(buffer[..length].to_vec());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(received.as_deref(), Some(&b"next"[..]));
}

#[test]
fn a_pair_is_not_reused_before_it_has_rested_unless_the_range_is_used_up() {
    let base = free_range();
    let pool =
        PortPool::with_resting(LOCALHOST, base, base + 5, 8, Duration::from_secs(3600)).unwrap();
    drop(pool.allocate(Rtcp::OwnPort).unwrap());
    let next = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(
        next.port(),
        base + 2,
        "a fresh pair while the released one rests"
    );
    assert_eq!(pool.reused(), 0);
    let last = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(last.port(), base + 4);
    // The range is used up: rather than refuse, the resting pair serves early.
    let early = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(early.port(), base);
    assert_eq!(pool.reused(), 1);
    assert!(matches!(
        pool.allocate(Rtcp::OwnPort),
        Err(PortError::Exhausted { .. })
    ));
}

#[test]
fn a_pair_that_hears_anything_while_resting_is_closed_not_reused() {
    let (pool, base) = resting_pool(Duration::ZERO);
    let first = pool.allocate(Rtcp::OwnPort).unwrap();
    let rtcp = SocketAddr::new(LOCALHOST, first.port() + 1);
    drop(first);
    // A peer of the old call still sending (to the RTCP port: either socket counts).
    let stray = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    stray.send_to(b"still here", rtcp).unwrap();

    let next = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(
        pool.reused(),
        0,
        "the pair that heard something is not handed out"
    );
    assert_eq!(
        next.port(),
        base + 2,
        "the search for a fresh pair moves on"
    );
    assert_eq!(pool.resting(), 0);
    // Its sockets were closed: the port is free for anybody.
    UdpSocket::bind(rtcp).expect("the stray pair's port was released");
}

#[test]
fn pairs_whose_sockets_are_still_held_or_beyond_the_share_are_closed() {
    let (pool, base) = resting_pool(Duration::ZERO);
    let mut pairs = (0..3).map(|_| pool.allocate(Rtcp::OwnPort).unwrap());
    let (first, second, third) = (
        pairs.next().unwrap(),
        pairs.next().unwrap(),
        pairs.next().unwrap(),
    );
    // Three pairs open, two at most may be: the first released is closed.
    drop(first);
    assert_eq!(pool.resting(), 0);
    UdpSocket::bind((LOCALHOST, base)).expect("closed beyond the share");
    // A holder (a player still streaming) keeps the second pair's RTP socket.
    let holder = Arc::clone(second.rtp());
    drop(second);
    assert_eq!(
        pool.resting(),
        0,
        "a pair still held elsewhere does not rest"
    );
    assert!(
        UdpSocket::bind((LOCALHOST, base + 2)).is_err(),
        "the holder keeps it bound"
    );
    drop(holder);
    UdpSocket::bind((LOCALHOST, base + 2)).expect("closed with its last holder");
    drop(third);
    assert_eq!(
        (pool.leased(), pool.resting()),
        (0, 1),
        "within the share: rests"
    );
}

#[test]
fn a_new_lease_beyond_the_share_closes_the_longest_resting_pair() {
    let base = free_range();
    let pool =
        PortPool::with_resting(LOCALHOST, base, base + 5, 4, Duration::from_secs(3600)).unwrap();
    let first = pool.allocate(Rtcp::OwnPort).unwrap();
    let _second = pool.allocate(Rtcp::OwnPort).unwrap();
    drop(first);
    assert_eq!(pool.resting(), 1);
    let third = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(
        third.port(),
        base + 4,
        "a fresh pair: the resting one has not rested"
    );
    assert_eq!(pool.resting(), 0, "closed to keep two pairs open");
    UdpSocket::bind((LOCALHOST, base)).expect("the closed pair's port is free");
}

#[test]
fn pairs_resting_too_long_are_closed_and_their_ports_freed() {
    let (pool, base) = resting_pool(Duration::from_secs(3600));
    drop(pool.allocate(Rtcp::OwnPort).unwrap());
    assert_eq!(pool.resting(), 1);
    assert_eq!(
        pool.close_resting_longer_than(Duration::from_secs(3600)),
        0,
        "not rested that long yet"
    );
    assert_eq!(pool.resting(), 1);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(pool.close_resting_longer_than(Duration::from_millis(1)), 1);
    assert_eq!((pool.resting(), pool.leased()), (0, 0));
    // Both sockets are closed: anybody may bind the ports now.
    UdpSocket::bind((LOCALHOST, base)).unwrap();
    UdpSocket::bind((LOCALHOST, base + 1)).unwrap();
}

#[test]
fn a_multiplexed_lease_opens_one_socket_and_its_rtcp_port_on_demand() {
    let (pool, base) = resting_pool(Duration::ZERO);
    let mut muxed = pool.allocate(Rtcp::Muxed).unwrap();
    assert_eq!(muxed.port(), base);
    assert!(muxed.rtcp().is_none());
    assert_eq!(pool.leased_sockets(), 1);
    // The answer declined multiplexing: RTCP gets its usual port after all.
    muxed.open_rtcp().unwrap();
    let rtcp_port = muxed.rtcp().unwrap().local_addr().unwrap().port();
    assert_eq!(rtcp_port, base + 1);
    assert_eq!(pool.leased_sockets(), 2);
    muxed.open_rtcp().unwrap();
    assert_eq!(pool.leased_sockets(), 2, "opening twice opens nothing more");

    // A rested pair serves a multiplexed lease with its RTCP socket closed...
    drop(muxed);
    assert_eq!((pool.resting(), pool.leased_sockets()), (1, 0));
    let single = pool.allocate(Rtcp::Muxed).unwrap();
    assert_eq!((single.port(), pool.reused()), (base, 1));
    assert!(single.rtcp().is_none());
    assert_eq!(pool.leased_sockets(), 1);
    UdpSocket::bind((LOCALHOST, base + 1)).expect("the RTCP socket was closed");
    // ... and a rested single serves a lease that needs RTCP by binding it again.
    drop(single);
    let pair = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!((pair.port(), pool.reused()), (base, 2));
    assert_eq!(pair.rtcp().unwrap().local_addr().unwrap().port(), base + 1);
    assert_eq!(pool.leased_sockets(), 2);
}

#[test]
fn the_resting_share_counts_sockets_so_single_sockets_rest_twice_as_many() {
    // Four sockets may be open: four multiplexed leases fit, where only two pairs would.
    let base = free_range();
    let pool =
        PortPool::with_resting(LOCALHOST, base, base + 7, 4, Duration::from_secs(3600)).unwrap();
    let leases: Vec<_> = (0..4)
        .map(|_| pool.allocate(Rtcp::Muxed).unwrap())
        .collect();
    assert_eq!(pool.leased_sockets(), 4);
    drop(leases);
    assert_eq!((pool.resting(), pool.leased_sockets()), (4, 0));
    // A pair beyond the share closes the longest-resting singles to make room.
    let _pair = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(pool.resting(), 2);
    assert_eq!(pool.leased_sockets(), 2);
}
