//! `tandem serve`: prepares the data directory (generated secrets), binds the HTTP and SIP
//! listeners from the resolved configuration, runs until SIGINT or SIGTERM, then drains: new
//! INVITEs get 503 with Retry-After and `/healthz` 503, live calls get the configured grace
//! period, and the process exits 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::AppConfig;
use crate::{data_dir, http, keys};

/// How often the drain checks whether the last call has ended.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Runs Tandem until a shutdown signal, then drains and returns.
pub async fn serve(config: AppConfig) -> anyhow::Result<()> {
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

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (endpoint, calls) = sip::endpoint::start(&config.sip, shutdown_rx.clone())
        .await
        .context("binding the SIP listeners")?;
    for (transport, addr) in endpoint.transports().local_addrs() {
        tracing::info!(?transport, %addr, "SIP listening");
    }
    let active = router::calls::ActiveCalls::default();
    tokio::spawn(router::calls::run(
        router::Directory::new(&config.router),
        endpoint.clone(),
        calls,
        active.clone(),
    ));
    tracing::info!(addr = %http_listener.local_addr()?, "HTTP listening");
    let http = tokio::spawn(http::serve(
        http_listener,
        Arc::new(http::HttpState {
            api_key,
            endpoint: endpoint.clone(),
            active_calls: active.clone(),
            presence: registry,
            gateway,
            media: cache,
        }),
        shutdown_rx,
    ));

    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
        _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
    }

    endpoint.drain();
    let deadline = tokio::time::Instant::now() + config.drain_grace;
    loop {
        let live = active.count();
        if live == 0 {
            tracing::info!("drained: no live calls");
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                live,
                "drain grace period over; stopping with calls still live"
            );
            break;
        }
        tokio::select! {
            // A second signal means "now": operators expect it to cut the grace short.
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
    let _ = shutdown_tx.send(true);
    // Give in-flight final responses a moment to leave the sockets.
    tokio::time::sleep(Duration::from_millis(50)).await;
    match tokio::time::timeout(Duration::from_secs(5), http).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Err(_) => tracing::warn!("HTTP connections still open at exit"),
        _ => {}
    }
    Ok(())
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
