//! The tokio shell around the call state machine: it takes the SIP edge's incoming calls,
//! resolves the dialled number against the [`Directory`], and runs one task per call
//! ([`task`]) that performs the [`crate::call::Call`]'s actions with the real subsystems: the
//! SIP endpoint, the presence registry, the RTP port pool, the prompt player and cache, the
//! relay threads and the webhook client. Dialled legs run as tasks of their own ([`leg`]); both
//! answer their party's re-INVITEs alike ([`reoffer`]).

mod audio;
mod leg;
mod reoffer;
mod task;

use std::sync::Arc;
use std::time::Duration;

use media::cache::Cache;
use media::ports::PortPool;
use media::rtp::player::Player;
use media::rtp::relay::Relays;
use sip::endpoint::{EndpointHandle, IncomingCall};
use sip::message::{StatusCode, Uri};
use tokio::sync::mpsc;

use crate::call::Start;
use crate::config::Number;
use crate::records::CallRecords;
use crate::sid::CallSid;
use crate::webhook::WebhookClient;
use crate::{Directory, Resolution};

pub use audio::{DEMO_BASE, DEMO_DOCUMENT};
pub use task::MAX_LEGS;

/// What the call tasks use: the subsystems and the router's configuration.
pub struct Services {
    /// Which application answers which number.
    pub directory: Directory,
    /// The SIP endpoint.
    pub endpoint: EndpointHandle,
    /// Where clients are.
    pub presence: presence::Registry,
    /// Tandem's RTP ports.
    pub ports: PortPool,
    /// The prompt player (one thread for every prompt stream).
    pub player: Player,
    /// The relay threads that bridge answered calls' media.
    pub relays: Relays,
    /// The prompt cache.
    pub cache: Arc<Cache>,
    /// Fetches instructions and sends status callbacks.
    pub webhooks: WebhookClient,
    /// `AccountSid` of webhook requests.
    pub account_sid: String,
    /// Where `<Dial><Number>` goes: the first trunk's `outbound_uri`.
    pub outbound_trunk: Option<Uri>,
    /// The call table of the HTTP API and metrics.
    pub records: CallRecords,
    /// Calls live at once at most (`[router] max_calls`), if limited; a new INVITE beyond is
    /// refused with 503 at once, before it costs a webhook or a socket.
    pub max_calls: Option<usize>,
    /// Descriptors the calls' RTP sockets may hold (the binary derives it from the open-files
    /// limit): a new INVITE is refused the same way unless [`SOCKETS_PER_CALL`] more fit.
    pub media_descriptors: usize,
}

/// RTP sockets one call holds at most with one dialled party: two per leg, one when the leg
/// multiplexes RTCP on its RTP port (RFC 5761). Admission counts the sockets actually leased
/// and leaves room for one more call at its most.
pub const SOCKETS_PER_CALL: usize = 4;

/// Seconds a caller refused for overload is asked to wait (Retry-After).
const OVERLOAD_RETRY_AFTER: u32 = 5;

/// How often resting RTP pairs are checked for having rested too long.
const RESTING_SWEEP: Duration = Duration::from_secs(5);

/// Takes every incoming call until the endpoint stops.
pub async fn run(services: Arc<Services>, mut calls: mpsc::Receiver<IncomingCall>) {
    let demo = match crate::twiml::parse(DEMO_DOCUMENT.as_bytes()) {
        Ok(document) => document.verbs,
        Err(error) => {
            // The bundled document is a constant checked by a unit test.
            tracing::error!(%error, "the bundled demo application does not parse");
            Vec::new()
        }
    };
    // Resting RTP pairs nobody took for a while are closed, so that a quiet switch gives
    // back the descriptors and ports of its last busy spell.
    let mut resting_sweep = tokio::time::interval(RESTING_SWEEP);
    resting_sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let call = tokio::select! {
            call = calls.recv() => match call {
                Some(call) => call,
                None => break,
            },
            _ = resting_sweep.tick() => {
                services.ports.close_resting_longer_than(media::ports::MAX_REST);
                continue;
            }
        };
        let dialled = call.request.uri.user().unwrap_or_default().to_owned();
        let (start, status_callback) = match services.directory.resolve(&dialled) {
            Resolution::NotFound => {
                tracing::info!(%dialled, "no application for the dialled number");
                services
                    .endpoint
                    .respond(&call.key, call.response(StatusCode::NOT_FOUND));
                continue;
            }
            Resolution::Application(number) => {
                (webhook_start(number), number.status_callback.clone())
            }
            Resolution::DemoApplication => (
                Start::Document {
                    verbs: demo.clone(),
                    base: DEMO_BASE.to_owned(),
                },
                None,
            ),
        };
        if !admits(
            services.records.active(),
            services.max_calls,
            services.ports.leased_sockets(),
            services.media_descriptors,
        ) {
            // Shed load before it costs descriptors: a switch out of sockets fails every call,
            // one that refuses some keeps the others (RFC 3261 §21.5.4, Retry-After §20.33).
            services.records.count_overload();
            let mut response = call
                .response(StatusCode::SERVICE_UNAVAILABLE)
                .with_reason("Overloaded");
            response
                .headers
                .push("Retry-After", OVERLOAD_RETRY_AFTER.to_string());
            services.endpoint.respond(&call.key, response);
            continue;
        }
        let sid = CallSid::random();
        tracing::info!(call_sid = %sid, %dialled, origin = ?call.origin, "incoming call");
        tokio::spawn(task::run(
            services.clone(),
            call,
            sid,
            start,
            status_callback,
        ));
    }
}

/// Whether a new call may start with `active` calls up (at most `max_calls`, if set) and
/// `leased_sockets` of `media_descriptors` RTP sockets held: room must be left for one more
/// call at its most ([`SOCKETS_PER_CALL`]).
fn admits(
    active: usize,
    max_calls: Option<usize>,
    leased_sockets: usize,
    media_descriptors: usize,
) -> bool {
    max_calls.is_none_or(|max| active < max)
        && leased_sockets + SOCKETS_PER_CALL <= media_descriptors
}

fn webhook_start(number: &Number) -> Start {
    Start::Webhook {
        url: number.voice_url.clone(),
        method: number.voice_method,
        fallback_url: number.voice_fallback_url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_admitted_while_sockets_for_one_more_fit_and_under_an_explicit_cap() {
        // 1,000 sockets: a call needs room for 4.
        assert!(admits(0, None, 0, 1_000));
        assert!(admits(400, None, 996, 1_000));
        assert!(!admits(400, None, 997, 1_000));
        // Calls that multiplex RTCP hold 2 sockets: twice as many fit as with pairs.
        assert!(admits(498, None, 2 * 498, 1_000));
        assert!(!admits(249, None, 4 * 249 + 1, 1_000));
        // An operator's cap applies on top.
        assert!(admits(1, Some(2), 0, 1_000));
        assert!(!admits(2, Some(2), 0, 1_000));
    }
}
