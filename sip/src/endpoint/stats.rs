//! Endpoint counters, read by `/metrics`: SIP messages by method and response class, and the
//! live transaction and dialog gauges that show whether state returns to baseline after load.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::{Method, StatusCode};

/// Methods counted individually; anything else is "other".
pub const COUNTED_METHODS: [&str; 8] = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "other",
];

/// Counters and gauges of the endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    requests_in: [AtomicU64; 8],
    responses_out: [AtomicU64; 6],
    responses_in: [AtomicU64; 6],
    /// Live server transactions.
    pub server_transactions: AtomicU64,
    /// Live client transactions.
    pub client_transactions: AtomicU64,
    /// Live dialog routes.
    pub dialogs: AtomicU64,
    /// INVITEs refused at the edge (403/407) before reaching call control.
    pub invites_refused: AtomicU64,
    /// Requests dropped by the per-source rate limit.
    pub rate_limited: AtomicU64,
    /// INVITEs refused with 503 because the endpoint's inbound queue was too long.
    pub invites_shed: AtomicU64,
    /// Sources the rate limiter tracks now.
    pub rate_limited_sources: AtomicU64,
}

impl Stats {
    pub(super) fn count_request(&self, method: &Method) {
        let i = COUNTED_METHODS
            .iter()
            .position(|m| *m == method.as_str())
            .unwrap_or(COUNTED_METHODS.len() - 1);
        self.requests_in[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_response_out(&self, status: StatusCode) {
        self.responses_out[usize::from(status.class() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_response_in(&self, status: StatusCode) {
        self.responses_in[usize::from(status.class() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests received, by method (names from [`COUNTED_METHODS`]).
    pub fn requests_in(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        COUNTED_METHODS
            .iter()
            .zip(&self.requests_in)
            .map(|(m, c)| (*m, c.load(Ordering::Relaxed)))
    }

    /// Responses sent, by class ("1xx" ... "6xx").
    pub fn responses_out(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        classes(&self.responses_out)
    }

    /// Responses received, by class.
    pub fn responses_in(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        classes(&self.responses_in)
    }
}

fn classes(counters: &[AtomicU64; 6]) -> impl Iterator<Item = (String, u64)> + '_ {
    counters
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{}xx", i + 1), c.load(Ordering::Relaxed)))
}
