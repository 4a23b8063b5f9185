//! `webhook`: a fast call-instructions server for benchmarks (`bench/calls.sh`).
//!
//! Answers every `GET` or `POST` on `/voice` with one fixed TwiML document, given with `--twiml`
//! or read from `--twiml-file`, without authentication or signature checks, so that the webhook
//! costs as little as possible next to the switch under test. It counts requests and, with
//! `--timing`, records how long each one took from the handler's start (request head parsed) to
//! the response being built, body read included: the webhook's own share of the round trip,
//! which the benchmark subtracts from the post-dial delay.
//!
//! `GET /stats` returns one line of `key=value` pairs: `requests`, and with `--timing` the
//! handling time's p50, p99, p99.9 and max in microseconds. The same line is printed on stdout
//! when the server stops (SIGINT or SIGTERM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;

/// The largest request body read: Tandem's webhook requests are a few hundred bytes of form.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Handling times are counted per microsecond up to this many; longer ones share the last
/// counter (their exact maximum is kept apart).
const HISTOGRAM_MICROS: usize = 100_000;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Serve one fixed TwiML document on /voice, fast, for benchmarks")]
struct Options {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The TwiML document to answer with.
    #[arg(
        long,
        conflicts_with = "twiml_file",
        required_unless_present = "twiml_file"
    )]
    twiml: Option<String>,
    /// A file holding the TwiML document to answer with.
    #[arg(long)]
    twiml_file: Option<PathBuf>,
    /// Record each request's handling time (reported by `GET /stats`).
    #[arg(long)]
    timing: bool,
    /// Runtime worker threads (1 runs everything on the main thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let document = match (&options.twiml, &options.twiml_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --twiml-file {}", path.display()))?,
        (None, None) => anyhow::bail!("give --twiml or --twiml-file"),
    };
    anyhow::ensure!(!document.trim().is_empty(), "the TwiML document is empty");
    anyhow::ensure!(options.threads > 0, "--threads must be at least 1");

    let runtime = if options.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads)
            .enable_all()
            .build()
    }
    .context("building the tokio runtime")?;
    let shared = Arc::new(Shared {
        document: Bytes::from(document),
        requests: AtomicU64::new(0),
        timing: options.timing.then(Histogram::new),
    });
    runtime.block_on(serve(options.listen, Arc::clone(&shared)))?;
    println!("{}", shared.summary());
    Ok(())
}

/// What every request handler sees.
struct Shared {
    /// The TwiML answer.
    document: Bytes,
    /// Requests served on `/voice`.
    requests: AtomicU64,
    /// Handling times, when `--timing` asked for them.
    timing: Option<Histogram>,
}

impl Shared {
    /// The `key=value` line of `GET /stats`.
    fn summary(&self) -> String {
        let requests = self.requests.load(Ordering::Relaxed);
        let mut line = format!("requests={requests}");
        if let Some(histogram) = &self.timing {
            line.push_str(&histogram.summary());
        }
        line
    }
}

/// Serves until SIGINT or SIGTERM.
async fn serve(listen: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let app = Router::new()
        .route("/voice", get(voice).post(voice))
        .route("/stats", get(stats))
        .with_state(shared);
    eprintln!("webhook listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await
        .context("serving")
}

/// `GET|POST /voice`: the fixed document.
async fn voice(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    shared.requests.fetch_add(1, Ordering::Relaxed);
    // The form's content is not needed, but reading it keeps the connection reusable: Tandem's
    // client keeps it alive for the next call.
    if axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .is_err()
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let response = ([(CONTENT_TYPE, "application/xml")], shared.document.clone()).into_response();
    if let Some(histogram) = &shared.timing {
        histogram.record(started.elapsed());
    }
    response
}

/// `GET /stats`: the counters as one `key=value` line.
async fn stats(State(shared): State<Arc<Shared>>) -> String {
    shared.summary() + "\n"
}

/// Resolves on SIGINT or SIGTERM (the benchmark script stops the server with the latter).
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler only Ctrl-C stops the server.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Handling times: one counter per whole microsecond, lock-free, so that recording does not
/// serialise the handlers.
struct Histogram {
    /// `counts[n]` is the number of requests that took `n` µs (the last one: that or longer).
    counts: Box<[AtomicU64]>,
    /// The longest handling time in microseconds.
    max_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: (0..=HISTOGRAM_MICROS).map(|_| AtomicU64::new(0)).collect(),
            max_micros: AtomicU64::new(0),
        }
    }

    fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let index = usize::try_from(micros).map_or(HISTOGRAM_MICROS, |m| m.min(HISTOGRAM_MICROS));
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// ` handling_us_p50=.. handling_us_p99=.. handling_us_p999=.. handling_us_max=..`.
    fn summary(&self) -> String {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let percentile = |per_mille: u64| -> String {
            if total == 0 {
                return "-".to_owned();
            }
            // The smallest time at or below which at least per_mille/1000 of the requests fall.
            let rank = (total * per_mille).div_ceil(1000).max(1);
            let mut seen = 0;
            for (micros, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return micros.to_string();
                }
            }
            HISTOGRAM_MICROS.to_string()
        };
        format!(
            " handling_us_p50={} handling_us_p99={} handling_us_p999={} handling_us_max={}",
            percentile(500),
            percentile(990),
            percentile(999),
            self.max_micros.load(Ordering::Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_times() {
        let histogram = Histogram::new();
        for micros in 1..=1000 {
            histogram.record(Duration::from_micros(micros));
        }
        histogram.record(Duration::from_secs(1));
        let summary = histogram.summary();
        assert!(summary.contains("handling_us_p50=501 "), "{summary}");
        assert!(summary.contains("handling_us_p99=991 "), "{summary}");
        assert!(summary.contains("handling_us_max=1000000"), "{summary}");
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles() {
        let summary = Histogram::new().summary();
        assert!(summary.contains("handling_us_p50=- "), "{summary}");
        assert!(summary.contains("handling_us_max=0"), "{summary}");
    }
}
