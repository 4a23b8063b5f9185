//! Incoming calls from the SIP edge, resolved against the [`Directory`].
//!
//! A dialled number that no application answers gets 404. Until the call-instruction engine
//! lands (the router issue), a number that does resolve is answered with 180 Ringing and rings
//! until the caller cancels or [`RING_LIMIT`] passes, then gets 480: a truthful "nobody can take
//! this call yet", never a fake answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sip::endpoint::{CallEvent, EndpointHandle, IncomingCall};
use sip::message::StatusCode;
use tokio::sync::mpsc;

use crate::{Directory, Resolution};

/// How long a resolved call rings before it is released with 480.
pub const RING_LIMIT: Duration = Duration::from_secs(30);

/// Calls being handled right now (what a drain waits for).
#[derive(Debug, Clone, Default)]
pub struct ActiveCalls(Arc<AtomicUsize>);

impl ActiveCalls {
    /// The number of live calls.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn enter(&self) -> ActiveGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.0.clone())
    }
}

/// Decrements the live-call count when a call task ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes every incoming call until the endpoint stops.
pub async fn run(
    directory: Directory,
    endpoint: EndpointHandle,
    mut calls: mpsc::Receiver<IncomingCall>,
    active: ActiveCalls,
) {
    while let Some(call) = calls.recv().await {
        let dialled = call.request.uri.user().unwrap_or_default().to_owned();
        match directory.resolve(&dialled) {
            Resolution::NotFound => {
                tracing::info!(%dialled, "no application for the dialled number");
                endpoint.respond(&call.key, call.response(StatusCode::NOT_FOUND));
            }
            Resolution::Application(_) | Resolution::DemoApplication => {
                tracing::info!(%dialled, origin = ?call.origin, "call ringing (call control not yet available)");
                let guard = active.enter();
                tokio::spawn(ring(endpoint.clone(), call, guard));
            }
        }
    }
}

async fn ring(endpoint: EndpointHandle, mut call: IncomingCall, _guard: ActiveGuard) {
    endpoint.respond(&call.key, call.response(StatusCode::RINGING));
    let released = tokio::time::timeout(RING_LIMIT, async {
        while let Some(event) = call.events.recv().await {
            match event {
                CallEvent::Cancelled | CallEvent::NoAck | CallEvent::TransportError => return,
                CallEvent::Request(request, key) => {
                    // Only INFO, UPDATE or PRACK can arrive on an early dialog; nothing is
                    // negotiated before call control exists.
                    endpoint.respond(&key, request.response(StatusCode::NOT_IMPLEMENTED, None));
                }
                CallEvent::Ack(_) => {}
            }
        }
    })
    .await;
    if released.is_err() {
        endpoint.respond(
            &call.key,
            call.response(StatusCode::TEMPORARILY_UNAVAILABLE)
                .with_reason("No Call Control Yet"),
        );
    }
}
