//! A whole Tandem (SIP edge, router, presence gateway, HTTP API, media cache) started inside
//! the test process on 127.0.0.1 port 0, with a configuration written as TOML and read by the
//! same parser the binary uses, so the tests also keep the file format honest.
//!
//! Every instance gets its own temporary data directory and its own block of RTP ports (see
//! [`rtp_port_block`]), so tests in one process and test processes running side by side do not
//! contend for media ports.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use ::tandem::app::Running;
use ::tandem::config::AppConfig;
use presence::token::{AccountSid, Grants, VoiceGrant};
use sip::config::ListenTransport;

/// The `/v1` API key of every test instance.
pub const API_KEY: &str = "test-api-key";
/// The account auth token that signs webhook requests (`X-Twilio-Signature`).
pub const AUTH_TOKEN: &str = "test-auth-token";
/// The key id (`kid`) of the HS256 token-signing key.
pub const TOKEN_KEY_ID: &str = "SKtest";
/// The HS256 secret of the token-signing key (32 bytes or more, RFC 7518 §3.2).
pub const TOKEN_KEY_SECRET: &str = "integration-test-secret-0123456789abcdef";
/// The trunk that admits 127.0.0.1.
pub const TRUNK_NAME: &str = "test";
/// The SIP T1 of test instances: short, so retransmission and timeout paths run quickly.
pub const T1: Duration = Duration::from_millis(50);

/// RTP ports per instance: 100 even/odd pairs, far more than one test's calls need.
const RTP_BLOCK_PORTS: u16 = 200;
/// RTP blocks are taken from 10000-19999: below the kernel's ephemeral range (32768 and up,
/// where port-0 binds land) and clear of the binary's default 20000-29999, which the
/// process-level tests use.
const RTP_AREA_START: u16 = 10_000;
const RTP_BLOCKS: u32 = 50;

/// Instances started by this process so far (each takes the next RTP block).
static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// A running Tandem. Dropping it stops it.
pub struct Tandem {
    // Declared first so that it stops before the data directory is deleted.
    running: Option<Running>,
    config: AppConfig,
    http: reqwest::Client,
    rtp_ports: (u16, u16),
    _dir: tempfile::TempDir,
}

impl Tandem {
    /// Starts a Tandem with the test configuration, after `edit` has had its way with it:
    /// HTTP and SIP (UDP and TCP) on 127.0.0.1 port 0, a temporary `data_dir`, the API key
    /// [`API_KEY`], the HS256 token key [`TOKEN_KEY_ID`], the account auth token
    /// [`AUTH_TOKEN`], 127.0.0.1/32 as the trunk [`TRUNK_NAME`], T1 = [`T1`], and an RTP port
    /// block of its own. No `[[numbers]]`: the bundled demo application answers every number.
    pub async fn start(edit: impl FnOnce(&mut AppConfig)) -> Tandem {
        Tandem::start_with_toml("", edit).await
    }

    /// Like [`Tandem::start`], with `extra` appended to the test configuration file before it
    /// is parsed (e.g. `[[numbers]]` tables pointing at a webhook server).
    pub async fn start_with_toml(extra: &str, edit: impl FnOnce(&mut AppConfig)) -> Tandem {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (first, last) = rtp_port_block();
        let text = format!(
            r#"
data_dir = "{data_dir}"

[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
t1_ms = {t1}

[http]
listen = "127.0.0.1:0"
api_key = "{API_KEY}"

[[auth.keys]]
id = "{TOKEN_KEY_ID}"
algorithm = "HS256"
secret = "{TOKEN_KEY_SECRET}"

[media]
rtp_ports = "{first}-{last}"

[account]
auth_token = "{AUTH_TOKEN}"

[drain]
grace_s = 5

[[trunks]]
name = "{TRUNK_NAME}"
allow = ["127.0.0.1/32"]

{extra}
"#,
            data_dir = dir.path().join("data").display(),
            t1 = T1.as_millis(),
        );
        let mut config = match ::tandem::config::parse(&text) {
            Ok(config) => config,
            Err(error) => panic!("the test configuration does not parse: {error}\n{text}"),
        };
        edit(&mut config);
        let running = match ::tandem::app::start(config.clone()).await {
            Ok(running) => running,
            Err(error) => panic!("Tandem did not start: {error:#}"),
        };
        Tandem {
            running: Some(running),
            config,
            http: reqwest::Client::new(),
            rtp_ports: (first, last),
            _dir: dir,
        }
    }

    /// The running application.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("Tandem is running until stop")
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.running().http_addr()
    }

    /// The HTTP base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// The WebSocket gateway URL, `ws://127.0.0.1:PORT/v1/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.http_addr())
    }

    /// The `/v1` API key.
    pub fn api_key(&self) -> &str {
        self.running().api_key()
    }

    /// The SIP UDP listener's address.
    pub fn sip_udp(&self) -> SocketAddr {
        self.running()
            .sip_addr(ListenTransport::Udp)
            .expect("a UDP listener")
    }

    /// The SIP TCP listener's address.
    pub fn sip_tcp(&self) -> SocketAddr {
        self.running()
            .sip_addr(ListenTransport::Tcp)
            .expect("a TCP listener")
    }

    /// The SIP endpoint.
    pub fn endpoint(&self) -> &sip::endpoint::EndpointHandle {
        self.running().endpoint()
    }

    /// The instance's RTP port range (inclusive), as configured.
    pub fn rtp_ports(&self) -> (u16, u16) {
        self.rtp_ports
    }

    /// An access token for `identity` with the incoming-call grant, valid for an hour, signed
    /// the way `tandem token` signs (the first key of the instance's key set).
    pub fn token(&self, identity: &str) -> String {
        self.token_with(identity, true, Duration::from_secs(3600))
    }

    /// An access token for `identity`, with or without the incoming grant, valid for `ttl`.
    pub fn token_with(&self, identity: &str, incoming: bool, ttl: Duration) -> String {
        let keys = ::tandem::keys::key_set(&self.config).expect("the instance's key set");
        let key = keys.keys().first().expect("a signing key");
        let account =
            AccountSid::parse(&self.config.router.account.sid).expect("a valid account sid");
        let grants = Grants {
            identity: presence::Identity::new(identity).expect("a valid identity"),
            voice: VoiceGrant {
                incoming,
                outgoing: None,
            },
        };
        presence::token::mint(key, &grants, &account, ttl, SystemTime::now())
            .expect("an HS256 key can sign")
    }

    /// `GET path` (e.g. `/v1/presence`) with the API key: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.http_url()))
            .bearer_auth(self.api_key())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        (status, body)
    }

    /// `GET path` with the API key, which must answer 2xx with JSON: the parsed body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await;
        assert!(
            (200..300).contains(&status),
            "GET {path} answered {status}: {body}"
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// The value of an unlabelled metric of `/metrics` (panics if absent).
    pub async fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    /// `POST path` with a JSON body and the API key, which must answer 2xx with JSON.
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .http
            .post(format!("{}{path}", self.http_url()))
            .bearer_auth(self.api_key())
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert!(
            (200..300).contains(&status),
            "POST {path} answered {status}: {text}"
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"))
    }

    /// What `serve` does on the first signal: refuse new calls, then wait up to `grace` for the
    /// live ones to end.
    pub async fn drain(&mut self, grace: Duration) {
        self.running
            .as_mut()
            .expect("Tandem is running until stop")
            .drain(grace)
            .await;
    }

    /// Stops everything and waits briefly for the HTTP server to close.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// The next RTP port block for an instance of this process: 200 ports inside 10000-19999,
/// chosen from the process id and a per-process counter, so that instances in one process never
/// share a block and parallel test processes rarely do. Sharing would not fail a test anyway:
/// the port pool binds each port before handing it out and skips any that someone else holds
/// (media/src/ports.rs), so a shared block only means fewer free pairs.
pub fn rtp_port_block() -> (u16, u16) {
    let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
    // A multiplicative spread, so that consecutive process ids land far apart.
    let slot =
        (std::process::id().wrapping_mul(2_654_435_761) >> 8).wrapping_add(instance) % RTP_BLOCKS;
    let first = RTP_AREA_START + u16::try_from(slot).expect("slot < 50") * RTP_BLOCK_PORTS;
    (first, first + RTP_BLOCK_PORTS - 1)
}
