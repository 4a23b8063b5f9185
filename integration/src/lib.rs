//! Test support for Tandem's end-to-end tests, all on 127.0.0.1 port 0 with real sockets:
//!
//! - [`tandem::Tandem`]: the whole application started in-process from a test configuration;
//! - [`webhook::WebhookServer`]: the application's web server, answering call instructions and
//!   checking request signatures;
//! - [`phone::Phone`]: a scripted SIP user agent, as a trunk calling in or a phone called out;
//! - [`client::Client`]: a WebSocket client app taking calls;
//! - [`baresip::Baresip`]: a real SIP phone (baresip) run headless as a child process;
//! - [`rtp::RtpEndpoint`]: plain RTP media with telephone events;
//! - [`Edge`], [`UdpPeer`], [`TcpPeer`]: the SIP edge alone, and raw peers for byte-level tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod baresip;
pub mod client;
pub mod phone;
pub mod rtp;
pub mod tandem;
pub mod webhook;

use std::net::SocketAddr;
use std::time::Duration;

use sip::config::{Config, Listen, ListenTransport, Trunk, User};
use sip::endpoint::{EndpointHandle, IncomingCall};
use sip::message::{parse, Message, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

/// A SIP edge running in this process.
pub struct Edge {
    /// The endpoint handle.
    pub handle: EndpointHandle,
    /// Calls that passed the edge.
    pub calls: mpsc::Receiver<IncomingCall>,
    /// Bound UDP address.
    pub udp: SocketAddr,
    /// Bound TCP address.
    pub tcp: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl Edge {
    /// Starts an edge on 127.0.0.1 port 0 with `edit` applied to a test config: loopback is a
    /// trunk, user 1001/secret exists, T1 is 50 ms.
    pub async fn start(edit: impl FnOnce(&mut Config)) -> Edge {
        let mut config = Config {
            listen: vec![
                Listen {
                    transport: ListenTransport::Udp,
                    addr: "127.0.0.1:0".parse().unwrap(),
                },
                Listen {
                    transport: ListenTransport::Tcp,
                    addr: "127.0.0.1:0".parse().unwrap(),
                },
            ],
            trunks: vec![Trunk {
                name: "loopback".into(),
                allow: vec!["127.0.0.1/32".parse().unwrap()],
                outbound_uri: None,
            }],
            users: vec![User {
                username: "1001".into(),
                password: "secret".into(),
            }],
            ..Config::default()
        };
        config.timers.t1 = Duration::from_millis(50);
        edit(&mut config);
        let (shutdown, rx) = watch::channel(false);
        let (handle, calls) = sip::endpoint::start(&config, rx).await.unwrap();
        let addr = |t| {
            handle
                .transports()
                .local_addrs()
                .iter()
                .find(|(tr, _)| *tr == t)
                .map(|(_, a)| *a)
                .unwrap()
        };
        Edge {
            udp: addr(ListenTransport::Udp),
            tcp: addr(ListenTransport::Tcp),
            handle,
            calls,
            shutdown,
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A scripted peer on a UDP socket.
pub struct UdpPeer {
    /// The socket.
    pub socket: UdpSocket,
}

impl UdpPeer {
    /// Binds 127.0.0.1:0.
    pub async fn bind() -> UdpPeer {
        UdpPeer {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    /// This peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Sends raw bytes to `to`.
    pub async fn send(&self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).await.unwrap();
    }

    /// The next datagram parsed as a message, within 5 s.
    pub async fn recv(&self) -> Message {
        parse(self.recv_text().await.as_bytes()).expect("a parseable message")
    }

    /// The next datagram as text, within 5 s.
    pub async fn recv_text(&self) -> String {
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), self.socket.recv_from(&mut buf))
            .await
            .expect("a datagram within 5 s")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The next response whose status is not 100 Trying.
    pub async fn recv_final(&self) -> Response {
        loop {
            if let Message::Response(r) = self.recv().await {
                if r.status.code() != 100 {
                    return r;
                }
            }
        }
    }

    /// Whether nothing arrives for `wait`.
    pub async fn is_silent(&self, wait: Duration) -> bool {
        let mut buf = vec![0u8; 65536];
        tokio::time::timeout(wait, self.socket.recv_from(&mut buf))
            .await
            .is_err()
    }
}

/// A scripted peer on a TCP connection.
pub struct TcpPeer {
    /// The stream.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl TcpPeer {
    /// Connects to `to`.
    pub async fn connect(to: SocketAddr) -> TcpPeer {
        TcpPeer::from_stream(TcpStream::connect(to).await.unwrap())
    }

    /// Wraps an accepted or connected stream.
    pub fn from_stream(stream: TcpStream) -> TcpPeer {
        TcpPeer {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads exactly `n` raw bytes (for keep-alive pongs).
    pub async fn recv_raw(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().await;
        }
        self.buf.drain(..n).collect()
    }

    /// The next framed message.
    pub async fn recv(&mut self) -> Message {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse::<usize>().unwrap())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let bytes: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return parse(&bytes).expect("a parseable message");
                }
            }
            self.fill().await;
        }
    }

    /// The next response whose status is not 100 Trying.
    pub async fn recv_final(&mut self) -> Response {
        loop {
            if let Message::Response(r) = self.recv().await {
                if r.status.code() != 100 {
                    return r;
                }
            }
        }
    }

    /// Whether the server closed the connection within `wait`.
    pub async fn is_closed_within(&mut self, wait: Duration) -> bool {
        let mut tmp = [0u8; 4096];
        matches!(
            tokio::time::timeout(wait, self.stream.read(&mut tmp)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    async fn fill(&mut self) {
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut tmp))
            .await
            .expect("data within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed by the server");
        self.buf.extend_from_slice(&tmp[..n]);
    }
}

/// A request text with the mandatory headers, for `method` to `uri`, from `from` (the peer's
/// address, used in Via), with transaction id `id` (branch, tag and Call-ID are derived from it).
pub fn request(
    method: &str,
    uri: &str,
    from: SocketAddr,
    transport: &str,
    id: &str,
    extra: &str,
) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bK{id};rport\r\nFrom: <sip:peer@{from}>;tag=t{id}\r\nTo: <{uri}>\r\nCall-ID: {id}@test\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}
