//! The port pool when the process is out of file descriptors (EMFILE), with real sockets. One
//! test in a file of its own: it lowers the process's open-files limit, which would break any
//! test running beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use media::ports::{PortPool, Rtcp};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A range of 16 ports none of which is bound now.
fn free_range() -> u16 {
    (40_000..60_000)
        .step_by(16)
        .find(|base| (*base..base + 16).all(|port| UdpSocket::bind((LOCALHOST, port)).is_ok()))
        .expect("no free port range on 127.0.0.1")
}

#[test]
fn out_of_descriptors_a_silent_resting_pair_serves_before_its_rest_is_over() {
    let base = free_range();
    // Pairs rest for an hour: only a lack of descriptors may hand them out early.
    let pool =
        PortPool::with_resting(LOCALHOST, base, base + 15, 16, Duration::from_secs(3600)).unwrap();
    let released = [
        pool.allocate(Rtcp::OwnPort).unwrap(),
        pool.allocate(Rtcp::OwnPort).unwrap(),
    ];
    let released_ports = released.each_ref().map(|pair| pair.port());
    drop(released);
    assert_eq!(pool.resting(), 2);
    // One of them hears a stray datagram: it must never serve again.
    let stray = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    stray
        .send_to(b"late", (LOCALHOST, released_ports[0]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));

    // Fill every descriptor the process may open.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::setrlimit(rlimit::Resource::NOFILE, open + 16, hard).unwrap();
    let mut filler = Vec::new();
    fill(&mut filler);
    assert!(File::open("/dev/null").is_err(), "every descriptor in use");

    // No socket can be opened, so the silent resting pair serves before its hour is over
    // (rather than the call being refused); the one that heard the stray is closed.
    let reused_before = pool.reused();
    let served = pool.allocate(Rtcp::OwnPort).unwrap();
    assert_eq!(served.port(), released_ports[1]);
    assert_eq!(pool.reused(), reused_before + 1);
    assert_eq!(pool.resting(), 0);

    // Nothing left to give: the error names the cause, not the port range.
    fill(&mut filler);
    let error = pool.allocate(Rtcp::OwnPort).unwrap_err();
    assert!(
        error.to_string().contains("out of file descriptors"),
        "{error}"
    );

    drop(filler);
    rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard).unwrap();
    assert!(
        pool.allocate(Rtcp::OwnPort).is_ok(),
        "descriptors back: a fresh pair"
    );
}

/// Opens files until the process is out of descriptors (EMFILE), keeping them in `filler`.
fn fill(filler: &mut Vec<File>) {
    let error = loop {
        match File::open("/dev/null") {
            Ok(file) => filler.push(file),
            Err(error) => break error,
        }
        assert!(filler.len() < 64, "the lowered limit did not take");
    };
    assert_eq!(error.raw_os_error(), Some(24), "EMFILE");
}
