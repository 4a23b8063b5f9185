//! The error of the prompt cache: why a URL (or a text to say) could not be turned into a
//! cached telephony prompt, each variant naming the party at fault (the caller's request, the
//! origin, the audio, the text-to-speech backend, or our own storage). Errors are `Clone`
//! because one origin fetch answers every concurrent caller of the same id (single flight); the
//! sources are shared behind `Arc`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::address::Refusal;
use super::speech::SpeechError;
use crate::outbound::OutboundError;
use crate::AudioError;

/// Why [`Cache::get_or_fetch`](super::Cache::get_or_fetch),
/// [`Cache::get_or_synthesize`](super::Cache::get_or_synthesize) or
/// [`Cache::open`](super::Cache::open) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Caller: the URL is not an absolute URL with a host (or is absurdly long).
    #[error("not a valid absolute URL")]
    InvalidUrl,
    /// Caller: only `http` and `https` URLs are fetched.
    #[error("unsupported URL scheme (only http and https)")]
    UnsupportedScheme,
    /// Caller: the origin (or a redirect target) resolves only to addresses the outbound
    /// policy refuses.
    #[error("refused to connect to {address}: {reason}")]
    RefusedAddress {
        /// The first refused address.
        address: IpAddr,
        /// Why it was refused.
        reason: Refusal,
    },
    /// Origin: the host name did not resolve.
    #[error("origin host did not resolve")]
    Resolve(#[source] Arc<std::io::Error>),
    /// Origin: connecting, sending or receiving failed.
    #[error("origin connection failed")]
    Connection(#[source] Arc<reqwest::Error>),
    /// Origin: connecting took longer than the connect timeout, or the whole fetch longer than
    /// the total timeout.
    #[error("origin did not answer within {limit:?}")]
    Timeout {
        /// The limit that was exceeded.
        limit: Duration,
    },
    /// Origin: it answered with a status other than 200 (or 304 to a conditional request).
    #[error("origin answered with status {status}")]
    OriginStatus {
        /// The status code.
        status: u16,
    },
    /// Origin: more redirects than allowed.
    #[error("more than {limit} redirects")]
    TooManyRedirects {
        /// The configured limit.
        limit: usize,
    },
    /// Origin: a redirect without a usable `Location`.
    #[error("redirect without a valid Location")]
    InvalidRedirect,
    /// Origin: the body is larger than the configured cap.
    #[error("origin body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Origin: the response's media type is not audio (e.g. an HTML error page with 200).
    #[error("origin sent {content_type:?}, not audio")]
    NotAudio {
        /// The `Content-Type` received (at most 100 characters of it).
        content_type: String,
    },
    /// Audio: the body could not be decoded or transcoded.
    #[error("origin audio could not be decoded")]
    Undecodable(#[source] Arc<AudioError>),
    /// Caller or backend: text to speech failed (see [`SpeechError::is_caller_fault`]).
    #[error("text to speech failed: {0}")]
    Speech(#[source] SpeechError),
    /// Internal: reading or writing the cache directory failed.
    #[error("cache storage failed")]
    Storage(#[source] Arc<std::io::Error>),
    /// Internal: the background fetch task died (a bug).
    #[error("fetch task failed")]
    FetchTaskFailed,
}

impl CacheError {
    /// Whether this is an origin failure in the sense of RFC 5861 §4 (a network error or a
    /// 500, 502, 503 or 504), which lets a stale entry be served under `stale-if-error`.
    pub fn is_origin_failure(&self) -> bool {
        match self {
            CacheError::Resolve(_) | CacheError::Connection(_) | CacheError::Timeout { .. } => true,
            CacheError::OriginStatus { status } => matches!(status, 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    pub(crate) fn storage(error: std::io::Error) -> CacheError {
        CacheError::Storage(Arc::new(error))
    }
}

impl From<OutboundError> for CacheError {
    /// Maps the shared outbound failures onto the cache's own variants (the client-building and
    /// body-reading failures are connection failures from the cache's point of view).
    fn from(error: OutboundError) -> Self {
        match error {
            OutboundError::InvalidUrl => CacheError::InvalidUrl,
            OutboundError::UnsupportedScheme => CacheError::UnsupportedScheme,
            OutboundError::RefusedAddress { address, reason } => {
                CacheError::RefusedAddress { address, reason }
            }
            OutboundError::Resolve(source) => CacheError::Resolve(source),
            OutboundError::Client(source) | OutboundError::Body(source) => {
                CacheError::Connection(source)
            }
            OutboundError::InvalidRedirect => CacheError::InvalidRedirect,
            OutboundError::TooLarge { limit } => CacheError::TooLarge { limit },
        }
    }
}
