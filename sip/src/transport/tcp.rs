//! TCP: accept loop with a per-source connection cap, one reader and one writer task per
//! connection, Content-Length framing with a size bound, idle timeouts and RFC 5626 keep-alives.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{accept_bytes, ConnectionId, Inbound, Limits, Received, Stats, Target};
use crate::config::ListenTransport;
use crate::message::{Framed, StreamFramer};

/// Messages queued per connection before it counts as a slow reader and is closed.
const WRITE_QUEUE: usize = 256;
/// Bound on establishing an outgoing connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP counters.
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections refused by the per-source cap.
    pub refused: AtomicU64,
    /// Connections closed for idleness.
    pub idle_closed: AtomicU64,
    /// Connections closed because the stream could not be framed.
    pub framing_closed: AtomicU64,
}

#[derive(Clone)]
pub(super) struct Registry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    limits: Limits,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<bool>,
    next_id: AtomicU64,
    // Registries of connections: short critical sections, never held across an await.
    conns: Mutex<Connections>,
}

#[derive(Default)]
struct Connections {
    writers: HashMap<ConnectionId, (SocketAddr, mpsc::Sender<Bytes>)>,
    by_addr: HashMap<SocketAddr, ConnectionId>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Registry {
    pub(super) fn new(
        limits: Limits,
        inbound: mpsc::Sender<Inbound>,
        stats: Arc<Stats>,
        shutdown: watch::Receiver<bool>,
    ) -> Registry {
        Registry {
            inner: Arc::new(RegistryInner {
                limits,
                inbound,
                stats,
                shutdown,
                next_id: AtomicU64::new(1),
                conns: Mutex::new(Connections::default()),
            }),
        }
    }

    fn conns(&self) -> MutexGuard<'_, Connections> {
        // A poisoned lock only means another task panicked mid-update of plain maps; the maps
        // are still structurally valid, so keep serving.
        self.inner.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn accept_loop(self, listener: TcpListener) {
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            let (stream, peer) = tokio::select! {
                _ = super::stopped(&mut shutdown) => return,
                r = listener.accept() => match r {
                    Ok(r) => r,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            {
                let mut conns = self.conns();
                let count = conns.per_ip.entry(peer.ip()).or_default();
                if *count >= self.inner.limits.max_connections_per_ip {
                    self.inner.stats.tcp.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "TCP connection refused: per-source cap");
                    continue;
                }
                *count += 1;
            }
            self.inner
                .stats
                .tcp
                .accepted
                .fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            tokio::spawn(self.clone().run_connection(stream, peer, None));
        }
    }

    pub(super) fn send(&self, target: &Target, bytes: Bytes) {
        let writer = {
            let conns = self.conns();
            target
                .connection
                .and_then(|id| conns.writers.get(&id))
                .or_else(|| {
                    conns
                        .by_addr
                        .get(&target.addr)
                        .and_then(|id| conns.writers.get(id))
                })
                .map(|(_, w)| w.clone())
        };
        match writer {
            Some(w) => {
                if w.try_send(bytes).is_err() {
                    // Full queue: a slow reader. Dropping the sender makes no difference to the
                    // connection task, so count it; the reader's idle timeout closes it if dead.
                    self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                let registry = self.clone();
                let addr = target.addr;
                tokio::spawn(async move {
                    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                        Ok(Ok(stream)) => {
                            let _ = stream.set_nodelay(true);
                            registry
                                .run_connection_with_first(stream, addr, bytes)
                                .await;
                        }
                        _ => {
                            registry.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%addr, "outgoing TCP connection failed");
                        }
                    }
                });
            }
        }
    }

    /// An outgoing connection: counted per IP like accepted ones so cleanup is uniform.
    async fn run_connection_with_first(self, stream: TcpStream, peer: SocketAddr, first: Bytes) {
        *self.conns().per_ip.entry(peer.ip()).or_default() += 1;
        self.run_connection(stream, peer, Some(first)).await;
    }

    /// Serves one connection until it closes, then unregisters it.
    async fn run_connection(self, stream: TcpStream, peer: SocketAddr, first: Option<Bytes>) {
        let id = ConnectionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        if let Some(first) = first {
            let _ = tx.try_send(first);
        }
        {
            let mut conns = self.conns();
            conns.writers.insert(id, (peer, tx.clone()));
            conns.by_addr.insert(peer, id);
        }
        self.inner.stats.tcp.open.fetch_add(1, Ordering::Relaxed);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = write.shutdown().await;
        });

        let mut framer = StreamFramer::new(self.inner.limits.max_message_size);
        let mut buf = vec![0u8; 16 * 1024];
        let mut shutdown = self.inner.shutdown.clone();
        'conn: loop {
            let read_result = tokio::select! {
                _ = super::stopped(&mut shutdown) => break,
                r = tokio::time::timeout(self.inner.limits.tcp_idle_timeout, read.read(&mut buf)) => r,
            };
            let n = match read_result {
                Err(_) => {
                    self.inner
                        .stats
                        .tcp
                        .idle_closed
                        .fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
            };
            framer.push(&buf[..n]);
            loop {
                match framer.next_frame() {
                    Ok(None) => break,
                    Ok(Some(Framed::Ping)) => {
                        // RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong.
                        let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                    }
                    Ok(Some(Framed::Pong)) => {}
                    Ok(Some(Framed::Message(bytes))) => {
                        let reply_tx = tx.clone();
                        let message = accept_bytes(&bytes, peer, &self.inner.stats, |r| {
                            let _ = reply_tx.try_send(r);
                        });
                        if let Some(message) = message {
                            let item = Inbound {
                                message,
                                received: Received {
                                    source: peer,
                                    local,
                                    transport: ListenTransport::Tcp,
                                    connection: Some(id),
                                },
                            };
                            // Streams get backpressure rather than loss: stop reading until
                            // the endpoint has room.
                            if self.inner.inbound.send(item).await.is_err() {
                                break 'conn;
                            }
                        }
                    }
                    Err(e) => {
                        self.inner
                            .stats
                            .tcp
                            .framing_closed
                            .fetch_add(1, Ordering::Relaxed);
                        // Once framing is lost the next message's start is unknown, so the only
                        // safe answer is to close (an oversize message's headers are not read,
                        // so no 513 can be built).
                        tracing::debug!(%peer, error = %e, "closing unframeable TCP stream");
                        break 'conn;
                    }
                }
            }
        }

        {
            let mut conns = self.conns();
            conns.writers.remove(&id);
            if conns.by_addr.get(&peer) == Some(&id) {
                conns.by_addr.remove(&peer);
            }
            if let Some(count) = conns.per_ip.get_mut(&peer.ip()) {
                *count -= 1;
                if *count == 0 {
                    conns.per_ip.remove(&peer.ip());
                }
            }
        }
        drop(tx);
        let _ = writer.await;
        self.inner.stats.tcp.open.fetch_sub(1, Ordering::Relaxed);
    }
}
