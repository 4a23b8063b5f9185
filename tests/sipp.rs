//! Conformance of the built `tandem` binary with a real, independent SIP peer: SIPp
//! (Debian package `sip-tester`) runs the scenarios in `tests/sipp/` over UDP and TCP, and each
//! run must end with every call successful. Also checks the graceful drain on SIGTERM with a
//! scripted UDP caller.
//!
//! SIPp is required: the README's test command installs it. A missing `sipp` fails these tests
//! with that instruction rather than skipping them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{which, Tandem};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Runs one SIPp scenario for `calls` calls and asserts they all succeeded.
fn sipp(tandem: &Tandem, name: &str, transport: &str, service: &str, extra: &[&str]) {
    let sipp = which("sipp").unwrap_or_else(|| {
        panic!("sipp not found: install the Debian package sip-tester (the README's test command does)")
    });
    let output = Command::new(sipp)
        .arg(format!("127.0.0.1:{}", tandem.port))
        .args(["-sf"])
        .arg(scenario(name))
        .args([
            "-t",
            transport,
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-m",
            "1",
            "-s",
            service,
        ])
        .args([
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            "-max_recv_loops",
            "1000",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sipp {name} over {transport} failed ({:?}):\n{stderr}\n{}",
        output.status.code(),
        stdout.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn serve_runs_on_embedded_defaults_and_stops_cleanly() {
    let mut tandem = Tandem::start_with_embedded_defaults();
    // The binary turns transparent huge pages off for itself (see src/main.rs): with them, its
    // allocator's page faults doubled the post-dial delay's tail.
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", tandem.child.id()))
            .expect("the child's /proc status");
        assert!(
            status.lines().any(|line| line == "THP_enabled:\t0"),
            "transparent huge pages are still on for tandem serve:\n{status}"
        );
    }
    sipp(&tandem, "options.xml", "u1", "+15550100", &[]);
    sipp(&tandem, "options.xml", "t1", "+15550100", &[]);
    tandem.signal("TERM");
    assert_eq!(tandem.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn sipp_conformance_over_udp_and_tcp() {
    let tandem = Tandem::start();
    for transport in ["u1", "t1"] {
        sipp(&tandem, "options.xml", transport, "+15550100", &[]);
        sipp(&tandem, "invite_404.xml", transport, "+15559999", &[]);
        sipp(&tandem, "invite_cancel.xml", transport, "+15550100", &[]);
        sipp(
            &tandem,
            "register_digest.xml",
            transport,
            "1001",
            &["-au", "1001", "-ap", "s3cret-1001"],
        );
        // A wrong password and an unknown user get the same 401-then-403.
        sipp(
            &tandem,
            "register_wrong_password.xml",
            transport,
            "1001",
            &["-au", "1001", "-ap", "wrong"],
        );
        sipp(
            &tandem,
            "register_wrong_password.xml",
            transport,
            "9999",
            &["-au", "9999", "-ap", "whatever"],
        );
    }
}

/// A scripted UDP caller for what SIPp cannot express in one scenario (a signal mid-call).
struct Caller {
    socket: UdpSocket,
    to: SocketAddr,
}

impl Caller {
    fn new(port: u16) -> Caller {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Caller {
            socket,
            to: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn invite(&self, call: &str, number: &str) {
        let local = self.socket.local_addr().unwrap();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
            local.port() + 2
        );
        let msg = format!(
            "INVITE sip:{number}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call};rport\r\nFrom: <sip:caller@{local}>;tag=f{call}\r\nTo: <sip:{number}@{to}>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            to = self.to
        );
        self.socket.send_to(msg.as_bytes(), self.to).unwrap();
    }

    fn cancel(&self, call: &str, number: &str) {
        let local = self.socket.local_addr().unwrap();
        let msg = format!(
            "CANCEL sip:{number}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call};rport\r\nFrom: <sip:caller@{local}>;tag=f{call}\r\nTo: <sip:{number}@{to}>\r\nCall-ID: {call}\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            to = self.to
        );
        self.socket.send_to(msg.as_bytes(), self.to).unwrap();
    }

    /// Reads responses until one of `call` with a status line starting `status` arrives.
    fn expect(&self, call: &str, status: &str) -> String {
        let mut buf = [0u8; 65536];
        loop {
            let n = self.socket.recv(&mut buf).expect("response in time");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains(&format!("Call-ID: {call}\r\n"))
                && text.starts_with(&format!("SIP/2.0 {status}"))
            {
                return text;
            }
        }
    }
}

#[test]
fn sigterm_drains_new_invites_get_503_and_exit_is_clean() {
    let mut tandem = Tandem::start();
    let caller = Caller::new(tandem.port);
    caller.invite("live-call", "+15550100");
    caller.expect("live-call", "100");

    tandem.signal("TERM");
    tandem.wait_draining();
    // The live call keeps the process up; a new INVITE is refused with Retry-After.
    caller.invite("late-call", "+15550100");
    let refused = caller.expect("late-call", "503");
    assert!(refused.contains("Retry-After: "), "{refused}");
    assert!(
        tandem.child.try_wait().unwrap().is_none(),
        "exited with a live call"
    );

    // The live call ends (the caller cancels it): the drain completes and the exit code is 0.
    caller.cancel("live-call", "+15550100");
    caller.expect("live-call", "487");
    assert_eq!(tandem.wait_exit(Duration::from_secs(5)), Some(0));
}
