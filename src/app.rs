//! `tandem serve`: prepares the data directory (generated secrets), binds the HTTP and SIP
//! listeners from the resolved configuration, runs until SIGINT or SIGTERM, then drains: new
//! INVITEs get 503 with Retry-After and `/healthz` 503, live calls get the configured grace
//! period, and the process exits 0.
//!
//! [`start`] does everything up to the signal wait and returns a [`Running`] handle, so that the
//! whole application can also run inside a test process (bound on port 0, addresses read back
//! from the handle); [`serve`] is [`start`], the signal wait, [`Running::drain`] and
//! [`Running::stop`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sip::config::ListenTransport;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::AppConfig;
use crate::{data_dir, http, keys};

/// How often the drain checks whether the last call has ended.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// How long [`Running::stop`] waits for the HTTP server to close its connections.
const HTTP_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A started Tandem: its bound addresses and the means to drain and stop it. Dropping it stops
/// everything (the shutdown signal is sent; tasks end on their own shortly after).
pub struct Running {
    http_addr: SocketAddr,
    sip_addrs: Vec<(ListenTransport, SocketAddr)>,
    api_key: String,
    endpoint: sip::endpoint::EndpointHandle,
    calls: router::records::CallRecords,
    shutdown: watch::Sender<bool>,
    /// `None` once [`Running::stop`] took it.
    http: Option<JoinHandle<std::io::Result<()>>>,
}

/// Runs Tandem until a shutdown signal, then drains and returns.
pub async fn serve(config: AppConfig) -> anyhow::Result<()> {
    let grace = config.drain_grace;
    let running = start(config).await?;

    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
        _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
    }

    // Refuse new work before waiting, so that a second signal arriving at once still leaves
    // the endpoint draining while it stops.
    running.begin_drain();
    tokio::select! {
        _ = running.wait_for_calls(grace) => {}
        // A second signal means "now": operators expect it to cut the grace short.
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    running.stop().await;
    Ok(())
}

/// Starts everything `serve` runs: prepares the data directory and secrets, opens the media
/// cache, binds the HTTP and SIP listeners, and spawns the SIP endpoint, the call router and
/// the HTTP server. Returns once every listener is bound (ports given as 0 are chosen by the
/// system; [`Running`] reports them).
pub async fn start(config: AppConfig) -> anyhow::Result<Running> {
    data_dir::ensure(&config.data_dir)?;
    let api_key = match &config.http.api_key {
        Some(key) => key.expose().to_owned(),
        None => {
            let (key, path) = data_dir::secret(&config.data_dir, data_dir::API_KEY_FILE)?;
            tracing::info!(path = %path.display(), "HTTP API key (generated on first start)");
            key
        }
    };
    let keys = Arc::new(keys::key_set(&config)?);
    let registry = presence::Registry::new(config.presence.registry.clone());
    let gateway =
        presence::gateway::Gateway::new(keys, registry.clone(), config.presence.gateway.clone());
    let cache = media::cache::Cache::new(media::cache::CacheConfig::new(
        &config.media.cache_dir,
        config.media.cache_max_bytes,
    ))
    .with_context(|| {
        format!(
            "opening the media cache {}",
            config.media.cache_dir.display()
        )
    })?;
    let http_listener = bind_http(config.http.listen)
        .with_context(|| format!("binding the HTTP listener {}", config.http.listen))?;
    let http_addr = http_listener.local_addr()?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (endpoint, calls) = sip::endpoint::start(&config.sip, shutdown_rx.clone())
        .await
        .context("binding the SIP listeners")?;
    let sip_addrs = endpoint.transports().local_addrs().to_vec();
    for (transport, addr) in &sip_addrs {
        tracing::info!(?transport, %addr, "SIP listening");
    }

    // The call router: takes every call the SIP edge accepts.
    let records = router::records::CallRecords::default();
    let media_descriptors = media_descriptors();
    let services = router::engine::Services {
        directory: router::Directory::new(&config.router),
        endpoint: endpoint.clone(),
        presence: registry.clone(),
        ports: media::ports::PortPool::with_resting(
            std::net::IpAddr::from([0, 0, 0, 0]),
            config.media.rtp_ports.first(),
            config.media.rtp_ports.last(),
            media_descriptors,
            media::ports::DEFAULT_REST,
        )
        .context("the [media] rtp_ports range")?,
        player: media::rtp::player::Player::spawn(Default::default()),
        relays: media::rtp::relay::Relays::spawn(Default::default())
            .context("starting the RTP relay threads")?,
        cache: cache.clone(),
        webhooks: router::webhook::WebhookClient::new(
            router::webhook::WebhookConfig::default(),
            config.router.account.auth_token.clone(),
        )
        .context("building the webhook client")?,
        account_sid: config.router.account.sid.clone(),
        outbound_trunk: config
            .sip
            .trunks
            .iter()
            .find_map(|trunk| trunk.outbound_uri.clone()),
        records: records.clone(),
        max_calls: config.router.max_calls,
        media_descriptors,
    };
    let webhooks = services.webhooks.clone();
    let rtp_ports = services.ports.clone();
    tokio::spawn(router::engine::run(Arc::new(services), calls));

    tracing::info!(addr = %http_addr, "HTTP listening");
    let http = tokio::spawn(http::serve(
        http_listener,
        Arc::new(http::HttpState {
            api_key: api_key.clone(),
            endpoint: endpoint.clone(),
            calls: records.clone(),
            webhooks,
            rtp_ports,
            presence: registry,
            gateway,
            media: cache,
        }),
        shutdown_rx,
    ));

    Ok(Running {
        http_addr,
        sip_addrs,
        api_key,
        endpoint,
        calls: records,
        shutdown: shutdown_tx,
        http: Some(http),
    })
}

impl Running {
    /// The bound address of the HTTP API and WebSocket listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound address of the first SIP listener on `transport`, if one is configured.
    pub fn sip_addr(&self, transport: ListenTransport) -> Option<SocketAddr> {
        self.sip_addrs
            .iter()
            .find(|(bound, _)| *bound == transport)
            .map(|(_, addr)| *addr)
    }

    /// The bearer token of the `/v1` API (configured, or generated into `data_dir`).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The SIP endpoint.
    pub fn endpoint(&self) -> &sip::endpoint::EndpointHandle {
        &self.endpoint
    }

    /// The call table (live and recent calls).
    pub fn calls(&self) -> &router::records::CallRecords {
        &self.calls
    }

    /// What `serve` does after the first signal: new INVITEs get 503 and `/healthz` turns 503,
    /// then this waits until no call is live or `grace` has passed.
    pub async fn drain(&mut self, grace: Duration) {
        self.begin_drain();
        self.wait_for_calls(grace).await;
    }

    /// Stops everything: the shutdown signal goes to every task, then this waits briefly for
    /// the HTTP server to close its connections.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        // Give in-flight final responses a moment to leave the sockets.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(http) = self.http.take() else {
            return;
        };
        match tokio::time::timeout(HTTP_STOP_TIMEOUT, http).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
            Err(_) => tracing::warn!("HTTP connections still open at exit"),
            _ => {}
        }
    }

    fn begin_drain(&self) {
        self.endpoint.drain();
    }

    /// Waits until no call is live, or `grace` has passed. Cancel-safe: it only polls.
    async fn wait_for_calls(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            // Untaken first: a call leaves that count only once it is in the call table.
            let untaken = self.endpoint.untaken_calls();
            let live = self.calls.active();
            if untaken == 0 && live == 0 {
                tracing::info!("drained: no live calls");
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    live,
                    untaken,
                    "drain grace period over; stopping with calls still live"
                );
                return;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Descriptors kept for everything that is not a call's RTP sockets: SIP and HTTP listeners,
/// TCP and WebSocket connections, webhook connections, files.
const RESERVED_DESCRIPTORS: u64 = 1024;

/// The descriptors of this process for the calls' RTP sockets, leased and resting: every one
/// not reserved. Calls are admitted while the leased sockets leave room for one more call at
/// its most (`router::engine::SOCKETS_PER_CALL`: 2–4, by whether its parties multiplex RTCP),
/// and released pairs rest with their sockets open only within it, so resting pairs take
/// descriptors that calls are not using and give them back as calls need them. The soft
/// open-files limit is raised to the hard one first (as servers do: the default soft limit of
/// 1024 would cap Tandem at a few hundred calls).
fn media_descriptors() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let media = usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS))
        .unwrap_or(usize::MAX)
        .max(router::engine::SOCKETS_PER_CALL);
    tracing::info!(
        open_files = limit,
        rtp_sockets = media,
        calls_at_most = media / 2,
        calls_at_least = media / router::engine::SOCKETS_PER_CALL,
        "call limit from the open-files limit"
    );
    media
}

/// Pending connections the HTTP listener queues: bursts of clients (reconnect storms after a
/// restart) must not be dropped by the kernel's default of 128.
const HTTP_BACKLOG: u32 = 4096;

fn bind_http(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(HTTP_BACKLOG)
}
