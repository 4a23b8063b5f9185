//! The webhook client: fetches call instructions (TwiML) from an application's URL and sends
//! status callbacks, the way Twilio does, so existing Twilio applications work unchanged.
//!
//! Requests are a POST with the parameters form-encoded (or a GET with them appended to the
//! query), signed with `X-Twilio-Signature` ([`signature`]) when an auth token is configured.
//! Redirects are followed by hand (at most [`WebhookConfig::max_redirects`]), each hop's address
//! vetted by [`media::outbound`] (the same server-side request forgery defence as the prompt
//! cache) and re-signed for its own URL. Only failures to establish a connection are retried
//! (nothing reached the server, so a retry cannot run a side effect twice); a status other than
//! 2xx never is. One total timeout bounds the whole exchange, retries and body included.
//!
//! Code map: [`WebhookClient`] (`client`: the request, redirects, retries, background
//! callbacks), [`Params`], [`signature()`], [`WebhookError`] (with Twilio error codes).
//!
//! Invariant: a status callback never delays the call: [`WebhookClient::send_in_background`]
//! spawns and returns, with a bounded number in flight; beyond it callbacks are dropped and
//! counted.
//! Invariant: no URL query (which may carry secrets) and no auth token is ever logged; logs
//! name the scheme, host, port and path only.

mod client;
mod error;
mod params;
mod signature;

use std::time::Duration;

use media::cache::AddressPolicy;

pub use client::{loggable, WebhookClient};
pub use error::WebhookError;
pub use params::Params;
pub use signature::signature;

/// The longest URL accepted from an application (before GET parameters are appended), in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Limits and policy of webhook requests. [`Default`] gives Twilio's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Bound on establishing one connection (Twilio: 5 s per attempt).
    pub connect_timeout: Duration,
    /// Bound on one whole request: connection retries, redirects and the body (Twilio: 15 s).
    pub total_timeout: Duration,
    /// The largest body accepted, in bytes (default 1 MiB; the TwiML parser itself stops at
    /// [`crate::twiml::MAX_DOCUMENT_BYTES`]).
    pub max_body_bytes: usize,
    /// Redirects followed at most (default 3).
    pub max_redirects: usize,
    /// Extra attempts after a failure to connect (refused, unreachable, reset or timed out
    /// before any byte was sent), with a short backoff of 100 ms, then 300 ms, tripling, all
    /// within [`total_timeout`](Self::total_timeout). Default 2.
    pub connect_retries: u32,
    /// Which addresses may be connected to (default: private and loopback allowed, as for the
    /// prompt cache; link-local and cloud metadata addresses are always refused).
    pub policy: AddressPolicy,
    /// Status callbacks in flight at most; further ones are dropped and counted (default 256).
    pub max_callbacks_in_flight: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_body_bytes: 1 << 20,
            max_redirects: 3,
            connect_retries: 2,
            policy: AddressPolicy {
                allow_private: true,
                allow_loopback: true,
            },
            max_callbacks_in_flight: 256,
        }
    }
}

/// Call instructions as fetched: the body, the URL that answered, and its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instructions {
    /// The body, UTF-8 (usually a TwiML document for [`crate::twiml::parse`]).
    pub body: String,
    /// The final URL after redirects: relative URLs in the TwiML (`action`, `<Redirect>`,
    /// `<Play>`) resolve against it.
    pub url: url::Url,
    /// The response's `Content-Type`, if any (e.g. `text/xml; charset=utf-8`).
    pub content_type: Option<String>,
}

/// Counters of a [`WebhookClient`] since it was created (shared by its clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookMetrics {
    /// Instruction fetches started.
    pub fetches: u64,
    /// Instruction fetches that ended in an error.
    pub fetch_failures: u64,
    /// Status callbacks answered with 2xx.
    pub callbacks_sent: u64,
    /// Status callbacks that failed (any [`WebhookError`], non-2xx included).
    pub callbacks_failed: u64,
    /// Status callbacks dropped without being sent (too many in flight, or no runtime).
    pub callbacks_dropped: u64,
    /// Connection attempts repeated after a connection failure (fetches and callbacks).
    pub connect_retries: u64,
}
