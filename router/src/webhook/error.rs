//! The error of the webhook client: why call instructions could not be fetched (or a status
//! callback not delivered), one variant per cause, each with the Twilio error code that the
//! fallback request carries as `ErrorCode` and that the debugger log names.
//!
//! Errors are `Clone` (sources are shared behind `Arc`) so the call engine can keep one for the
//! fallback request and log another.

use std::error::Error as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use media::cache::Refusal;
use media::outbound::OutboundError;

/// Why a webhook request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// Application: the URL is not an absolute URL with a host, or is longer than
    /// [`MAX_URL_BYTES`](super::MAX_URL_BYTES).
    #[error("not a valid absolute URL")]
    InvalidUrl,
    /// Application: only `http` and `https` URLs are requested.
    #[error("unsupported URL scheme (only http and https)")]
    UnsupportedScheme,
    /// Application: the host (or a redirect's host) resolves only to addresses the outbound
    /// policy refuses (link-local and cloud metadata always; private and loopback per policy).
    #[error("refused to connect to {address}: {reason}")]
    RefusedAddress {
        /// The first refused address.
        address: IpAddr,
        /// Why it was refused.
        reason: Refusal,
    },
    /// Application's server: the host name did not resolve.
    #[error("host did not resolve")]
    Resolve(#[source] Arc<std::io::Error>),
    /// Application's server: every connection attempt was refused (nothing listens there).
    #[error("connection refused")]
    ConnectionRefused(#[source] Arc<reqwest::Error>),
    /// Application's server: the connection could not be established (unreachable, reset
    /// during the handshake, TLS failure, or the connect timeout), after the retries.
    #[error("connection failed")]
    Connect(#[source] Arc<reqwest::Error>),
    /// Application's server: the whole request, retries, redirects and body included, took
    /// longer than the total timeout.
    #[error("no complete answer within {limit:?}")]
    Timeout {
        /// The total timeout.
        limit: Duration,
    },
    /// Application's server: the connection was made but the exchange broke (closed before a
    /// complete response, malformed response, reset while the body was read).
    #[error("HTTP exchange failed")]
    Protocol(#[source] Arc<reqwest::Error>),
    /// Application's server: it answered with a status other than 2xx (after redirects).
    #[error("answered with status {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// Application's server: more redirects than allowed.
    #[error("more than {limit} redirects")]
    TooManyRedirects {
        /// The configured limit.
        limit: usize,
    },
    /// Application's server: a redirect without a usable `Location`.
    #[error("redirect without a valid Location")]
    InvalidRedirect,
    /// Application's server: the body is larger than the configured cap.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Application's server: the body is not UTF-8 (TwiML documents are XML in UTF-8).
    #[error("body is not UTF-8")]
    NotUtf8,
    /// Internal: the HTTP client could not be built (TLS backend initialisation).
    #[error("HTTP client could not be built")]
    Client(#[source] Arc<reqwest::Error>),
}

impl WebhookError {
    /// The Twilio error code for this failure, as carried in the fallback request's `ErrorCode`.
    /// Codes from Twilio's error dictionary: 11100 invalid URL format, 11200 HTTP retrieval
    /// failure (also Twilio Voice's code for a 4xx/5xx answer), 11202 TCP connection refused,
    /// 11205 HTTP connection failure (whose documentation covers unreachable, private and
    /// loopback hosts and both Twilio timers), 11206 HTTP protocol violation, 11210 HTTP bad
    /// host name, 11215 too many redirects, 11750 TwiML response body too large, 12100 document
    /// parse failure.
    pub fn twilio_code(&self) -> u16 {
        match self {
            WebhookError::InvalidUrl | WebhookError::UnsupportedScheme => 11100,
            WebhookError::RefusedAddress { .. } => 11205,
            WebhookError::Resolve(_) => 11210,
            WebhookError::ConnectionRefused(_) => 11202,
            WebhookError::Connect(_) | WebhookError::Timeout { .. } => 11205,
            WebhookError::Protocol(_) | WebhookError::InvalidRedirect => 11206,
            WebhookError::Status { .. } | WebhookError::Client(_) => 11200,
            WebhookError::TooManyRedirects { .. } => 11215,
            WebhookError::TooLarge { .. } => 11750,
            WebhookError::NotUtf8 => 12100,
        }
    }

    /// Classifies a failed `send`: connection failures (nothing was sent, so a retry is safe)
    /// apart from failures of an established exchange.
    pub(super) fn from_send(error: reqwest::Error) -> WebhookError {
        if error.is_connect() {
            if is_connection_refused(&error) {
                WebhookError::ConnectionRefused(Arc::new(error))
            } else {
                WebhookError::Connect(Arc::new(error))
            }
        } else {
            WebhookError::Protocol(Arc::new(error))
        }
    }

    /// Whether a retry may help and cannot duplicate the request: the connection was never
    /// established, so the server saw nothing.
    pub(super) fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            WebhookError::ConnectionRefused(_) | WebhookError::Connect(_)
        )
    }
}

impl From<OutboundError> for WebhookError {
    fn from(error: OutboundError) -> Self {
        match error {
            OutboundError::InvalidUrl => WebhookError::InvalidUrl,
            OutboundError::UnsupportedScheme => WebhookError::UnsupportedScheme,
            OutboundError::RefusedAddress { address, reason } => {
                WebhookError::RefusedAddress { address, reason }
            }
            OutboundError::Resolve(source) => WebhookError::Resolve(source),
            OutboundError::Client(source) => WebhookError::Client(source),
            OutboundError::InvalidRedirect => WebhookError::InvalidRedirect,
            OutboundError::TooLarge { limit } => WebhookError::TooLarge { limit },
            OutboundError::Body(source) => WebhookError::Protocol(source),
        }
    }
}

/// Whether the source chain of `error` holds an I/O "connection refused".
fn is_connection_refused(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = cause.source();
    }
    false
}
