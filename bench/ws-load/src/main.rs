//! `ws-load`: a load generator for Tandem's WebSocket gateway (`GET /v1/ws`, `tandem.v1`).
//!
//! Opens `--connections` WebSockets with at most `--concurrency` being set up at once, each from
//! one of `--source-ips` loopback addresses (127.0.X.Y, round-robin, so that every address stays
//! under the gateway's per-address cap), sends `listen` with a token it mints itself from the
//! development key (`--key-file`, the `signing_key` that `tandem serve` writes into its
//! data_dir) and then `register`, and waits for `ready`. The setup rate is the number of ready
//! connections over the time from the first connect to the last `ready`.
//!
//! Once every connection is ready (or has failed), it prints a `registered ...` line, holds the
//! connections idle for `--hold` seconds (each task only reads, which answers the gateway's
//! pings), and prints a one-line summary. Both lines are `key=value` pairs for scripts
//! (`bench/ws_load.sh`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use presence::token::{self, AccountSid, Algorithm, Grants, Key, VoiceGrant};
use presence::Identity;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// The subprotocol the gateway requires.
const SUBPROTOCOL: &str = "tandem.v1";

/// How long one connection may take from connect to `ready` before it counts as failed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's read buffer per connection: idle connections only ever read pings.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Open, authenticate and register many idle WebSockets against Tandem")]
struct Options {
    /// The gateway's URL.
    #[arg(long, default_value = "ws://127.0.0.1:18080/v1/ws")]
    url: String,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Distinct identities, assigned round-robin (default: one per connection). The gateway
    /// admits 10 devices per identity.
    #[arg(long)]
    identities: Option<usize>,
    /// Source addresses (127.0.1.1, 127.0.1.2, ...), assigned round-robin (default: enough
    /// for 80 connections each; the gateway admits 100 per address).
    #[arg(long)]
    source_ips: Option<usize>,
    /// First source port: connection `i` binds port `source_port_base + i / source_ips` on its
    /// address, below the kernel's ephemeral range so the range does not bound the count; 0
    /// lets the kernel choose.
    #[arg(long, default_value_t = 20000)]
    source_port_base: u16,
    /// Seconds to hold the connections idle once all are ready.
    #[arg(long, default_value_t = 30)]
    hold: u64,
    /// The development signing key (hex text used as the HS256 secret), kid `SKdev`.
    #[arg(long)]
    key_file: std::path::PathBuf,
    /// The key id of that key.
    #[arg(long, default_value = "SKdev")]
    key_id: String,
    /// The account sid tokens name as their subject (Tandem's `[account] sid`).
    #[arg(long, default_value = "AC00000000000000000000000000000000")]
    account_sid: String,
}

/// Why one connection failed; counted by kind in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Failure {
    /// Binding the client socket to its source address failed.
    #[error("bind")]
    Bind,
    /// The TCP connect failed.
    #[error("connect")]
    Connect,
    /// The server answered the upgrade with an HTTP error (429: per-address cap).
    #[error("http_refused")]
    HttpRefused,
    /// The WebSocket handshake failed otherwise.
    #[error("handshake")]
    Handshake,
    /// `listen` was not answered with `connected`.
    #[error("listen")]
    Listen,
    /// `register` was not answered with `ready`.
    #[error("register")]
    Register,
    /// Setup took longer than [`SETUP_TIMEOUT`].
    #[error("timeout")]
    Timeout,
}

impl Failure {
    const ALL: [Failure; 7] = [
        Failure::Bind,
        Failure::Connect,
        Failure::HttpRefused,
        Failure::Handshake,
        Failure::Listen,
        Failure::Register,
        Failure::Timeout,
    ];
}

/// What one connection's setup reports to the coordinator.
struct Setup {
    /// Time from its connect to its `ready`, or why it failed.
    result: Result<Duration, Failure>,
    /// When it ended.
    at: Instant,
}

/// Everything every connection task reads.
struct Plan {
    server: SocketAddr,
    url: String,
    source_ips: usize,
    source_port_base: u16,
    tokens: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let connections = options.connections;
    anyhow::ensure!(connections > 0, "--connections must be at least 1");
    anyhow::ensure!(options.concurrency > 0, "--concurrency must be at least 1");
    let identities = options.identities.unwrap_or(connections).max(1);
    let source_ips = options
        .source_ips
        .unwrap_or(connections.div_ceil(80))
        .clamp(1, 250 * 250);
    let plan = Arc::new(Plan {
        server: server_address(&options.url)?,
        url: options.url.clone(),
        source_ips,
        source_port_base: options.source_port_base,
        tokens: mint_tokens(&options, identities)?,
    });

    let (setup_sender, mut setup_receiver) = mpsc::unbounded_channel::<Setup>();
    let (stop_sender, stop_receiver) = watch::channel(false);
    let (dropped_sender, mut dropped_receiver) = mpsc::unbounded_channel::<()>();
    let permits = Arc::new(Semaphore::new(options.concurrency));
    let start = Instant::now();
    for index in 0..connections {
        // The permit is taken here, before spawning, so that at most `concurrency` tasks are
        // in setup and the rest are not yet spawned (and cost nothing).
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .context("the semaphore is never closed")?;
        let plan = Arc::clone(&plan);
        let setup_sender = setup_sender.clone();
        let mut stop = stop_receiver.clone();
        let dropped_sender = dropped_sender.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let outcome = tokio::time::timeout(SETUP_TIMEOUT, open(&plan, index))
                .await
                .unwrap_or(Err(Failure::Timeout));
            drop(permit);
            let (result, socket) = match outcome {
                Ok(socket) => (Ok(began.elapsed()), Some(socket)),
                Err(failure) => (Err(failure), None),
            };
            let _ = setup_sender.send(Setup {
                result,
                at: Instant::now(),
            });
            if let Some(socket) = socket {
                if !hold(socket, &mut stop).await {
                    let _ = dropped_sender.send(());
                }
            }
        });
    }
    drop(setup_sender);
    drop(dropped_sender);

    let mut latencies = Vec::with_capacity(connections);
    let mut failures = [0usize; Failure::ALL.len()];
    let mut last_ready = start;
    for _ in 0..connections {
        let Some(setup) = setup_receiver.recv().await else {
            break;
        };
        match setup.result {
            Ok(latency) => {
                latencies.push(latency);
                last_ready = last_ready.max(setup.at);
            }
            Err(failure) => {
                let kind = Failure::ALL
                    .iter()
                    .position(|known| *known == failure)
                    .unwrap_or(0);
                failures[kind] += 1;
            }
        }
    }
    let setup_seconds = (last_ready - start).as_secs_f64();
    let ready = latencies.len();
    latencies.sort_unstable();
    let rate = if setup_seconds > 0.0 {
        ready as f64 / setup_seconds
    } else {
        0.0
    };
    let failure_text = Failure::ALL
        .iter()
        .zip(failures)
        .filter(|(_, count)| *count > 0)
        .map(|(kind, count)| format!("{kind}:{count}"))
        .collect::<Vec<_>>()
        .join(",");
    let failed: usize = failures.iter().sum();
    println!(
        "registered ready={ready} failed={failed} failures={} setup_s={setup_seconds:.3} rate_per_s={rate:.0} latency_p50_ms={:.1} latency_p99_ms={:.1} latency_max_ms={:.1}",
        if failure_text.is_empty() { "none" } else { &failure_text },
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0),
    );

    tokio::time::sleep(Duration::from_secs(options.hold)).await;
    // Connections that ended during the hold have reported by now.
    let mut dropped = 0usize;
    while dropped_receiver.try_recv().is_ok() {
        dropped += 1;
    }
    let _ = stop_sender.send(true);
    println!(
        "summary connections={connections} concurrency={} identities={identities} source_ips={source_ips} ready={ready} failed={failed} failures={} setup_s={setup_seconds:.3} rate_per_s={rate:.0} hold_s={} dropped_during_hold={dropped}",
        options.concurrency,
        if failure_text.is_empty() { "none" } else { &failure_text },
        options.hold,
    );
    Ok(())
}

/// Connects connection `index`, sends `listen` and `register`, and returns the socket once the
/// gateway said `ready`.
async fn open(plan: &Plan, index: usize) -> Result<WebSocketStream<TcpStream>, Failure> {
    let source = source_address(plan, index);
    let socket = TcpSocket::new_v4().map_err(|_| Failure::Bind)?;
    // A port left in TIME_WAIT by the previous run may be bound again.
    socket.set_reuseaddr(true).map_err(|_| Failure::Bind)?;
    if socket.bind(source).is_err() {
        // That port is taken by something else: let the kernel choose one on this address.
        socket
            .bind(SocketAddr::new(source.ip(), 0))
            .map_err(|_| Failure::Bind)?;
    }
    let stream = socket
        .connect(plan.server)
        .await
        .map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);

    let mut request = plan
        .url
        .as_str()
        .into_client_request()
        .map_err(|_| Failure::Handshake)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0);
    let (mut socket, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|error| match error {
                tungstenite::Error::Http(_) => Failure::HttpRefused,
                _ => Failure::Handshake,
            })?;

    let token = &plan.tokens[index % plan.tokens.len()];
    let listen = serde_json::json!({"type": "listen", "payload": {"token": token}}).to_string();
    socket
        .send(Message::text(listen))
        .await
        .map_err(|_| Failure::Listen)?;
    expect(&mut socket, "connected", Failure::Listen).await?;
    socket
        .send(Message::text(r#"{"type":"register"}"#))
        .await
        .map_err(|_| Failure::Register)?;
    expect(&mut socket, "ready", Failure::Register).await?;
    Ok(socket)
}

/// Reads until a text message of type `wanted` (skipping control frames and other events such
/// as presence updates); `failure` if the socket ends or says something else first.
async fn expect(
    socket: &mut WebSocketStream<TcpStream>,
    wanted: &str,
    failure: Failure,
) -> Result<(), Failure> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value =
                    serde_json::from_str(text.as_str()).map_err(|_| failure)?;
                match value.get("type").and_then(serde_json::Value::as_str) {
                    Some(kind) if kind == wanted => return Ok(()),
                    Some("error") | None => return Err(failure),
                    // Another event (e.g. presence): not the answer yet.
                    Some(_) => {}
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Binary(_) | Message::Close(_)) | Err(_)) | None => {
                return Err(failure)
            }
        }
    }
}

/// Reads (which answers pings) until `stop`; `false` if the connection ended first.
async fn hold(mut socket: WebSocketStream<TcpStream>, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => return true,
        }
    }
}

/// Connection `index`'s source: address `index % source_ips` from 127.0.1.1 upwards (250
/// per third octet), port `source_port_base + index / source_ips` (or 0).
fn source_address(plan: &Plan, index: usize) -> SocketAddr {
    let slot = index % plan.source_ips;
    // At most 250 × 250 addresses (clamped in `run`), so both octets fit.
    let third = u8::try_from(1 + slot / 250).unwrap_or(u8::MAX);
    let fourth = u8::try_from(1 + slot % 250).unwrap_or(u8::MAX);
    let port = if plan.source_port_base == 0 {
        0
    } else {
        let offset = u16::try_from(index / plan.source_ips).unwrap_or(u16::MAX);
        plan.source_port_base.saturating_add(offset)
    };
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, third, fourth)), port)
}

/// One token per identity (`load-0`, `load-1`, ...), with the incoming grant, valid long
/// enough for setup and hold.
fn mint_tokens(options: &Options, identities: usize) -> anyhow::Result<Vec<String>> {
    let secret = std::fs::read_to_string(&options.key_file)
        .with_context(|| format!("reading {}", options.key_file.display()))?;
    let key = Key::new(
        options.key_id.as_str(),
        Algorithm::Hs256,
        secret.trim().as_bytes(),
    )
    .context("the signing key")?;
    let account = AccountSid::parse(&options.account_sid).context("--account-sid")?;
    let ttl = Duration::from_secs(options.hold + 3600);
    let now = SystemTime::now();
    (0..identities)
        .map(|index| {
            let grants = Grants {
                identity: Identity::new(&format!("load-{index}"))?,
                voice: VoiceGrant {
                    incoming: true,
                    outgoing: None,
                },
            };
            Ok(token::mint(&key, &grants, &account, ttl, now)?)
        })
        .collect()
}

/// `host[:port]` of a `ws://` URL.
fn host_of(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("ws://")
        .context("--url must start with ws:// (no TLS here)")?;
    Ok(rest.split('/').next().unwrap_or_default().to_owned())
}

/// The server's socket address, from a `ws://IP:port/...` URL.
fn server_address(url: &str) -> anyhow::Result<SocketAddr> {
    let host = host_of(url)?;
    host.parse()
        .with_context(|| format!("--url must name an IP address and port, not {host}"))
}

/// The `quantile` latency in milliseconds (0 when there are none).
fn percentile_ms(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let last = sorted.len() - 1;
    let index = ((last as f64) * quantile).round() as usize;
    sorted[index.min(last)].as_secs_f64() * 1000.0
}
