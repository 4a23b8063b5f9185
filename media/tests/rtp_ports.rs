//! The RTP port pool over a tiny range with real sockets: even RTP + odd RTCP pairs, ports
//! bound elsewhere are skipped, exhaustion is a typed error, dropping a lease frees the pair.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};

use media::ports::{PortError, PortPool};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A base port whose next six ports are free right now: probing keeps parallel test runs
/// (and other programs) from making this test flaky. The tests of this binary run in
/// parallel too, so each call starts past the ranges handed out before: two tests never
/// probe, release and then both take the same range.
fn free_range() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(42_000);
    loop {
        let base = NEXT.fetch_add(16, Ordering::Relaxed);
        assert!(base < 60_000, "no free port range on 127.0.0.1");
        let all_free = (base..base + 6).all(|port| UdpSocket::bind((LOCALHOST, port)).is_ok());
        if all_free {
            return base;
        }
    }
}

#[test]
fn pairs_are_even_and_odd_skip_busy_ports_and_run_out_cleanly() {
    let base = free_range();
    // An odd first port: the pool starts at the next even one.
    let pool = PortPool::new(LOCALHOST, base - 1, base + 5).unwrap();
    assert_eq!(pool.capacity(), 3);
    // Someone else holds the RTCP port of the second pair.
    let squatter = UdpSocket::bind((LOCALHOST, base + 3)).unwrap();

    let first = pool.allocate().unwrap();
    assert_eq!(first.port(), base);
    assert_eq!(first.rtp.local_addr().unwrap().port(), base);
    assert_eq!(first.rtcp.local_addr().unwrap().port(), base + 1);
    let second = pool.allocate().unwrap();
    assert_eq!(
        second.port(),
        base + 4,
        "the pair with a busy port is skipped"
    );
    assert_eq!(pool.leased(), 2);
    assert!(matches!(pool.allocate(), Err(PortError::Exhausted { .. })));

    // Dropping a lease frees its pair; so does the squatter leaving.
    drop(first);
    assert_eq!(pool.leased(), 1);
    drop(squatter);
    let third = pool.allocate().unwrap();
    let fourth = pool.allocate().unwrap();
    let mut ports = [third.port(), fourth.port()];
    ports.sort_unstable();
    assert_eq!(ports, [base, base + 2]);
    assert_eq!(third.local_addr().port(), third.port());
}

#[test]
fn the_leased_sockets_are_non_blocking_and_carry_traffic() {
    let base = free_range();
    let pool = PortPool::new(LOCALHOST, base, base + 1).unwrap();
    let ports = pool.allocate().unwrap();
    let mut buffer = [0u8; 8];
    let empty = ports.rtp.recv_from(&mut buffer).unwrap_err();
    assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
    let peer = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    peer.send_to(b"rtp", ports.local_addr()).unwrap();
    ports.rtp.set_nonblocking(false).unwrap();
    ports
        .rtp
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let (length, from) = ports.rtp.recv_from(&mut buffer).unwrap();
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
