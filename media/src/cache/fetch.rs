//! The origin fetcher of the prompt cache: one GET (conditional when we hold validators),
//! redirects followed by hand so every hop is vetted, names resolved and each connection pinned
//! to a vetted address, and the body read with a running byte count that stops at the cap. The
//! vetting, pinning, redirect resolution and capped read are [`crate::outbound`]'s, shared with
//! the router's webhook client.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

use super::CacheError;
use crate::outbound;

/// Fetch limits and the pinned clients (which carry the outbound-address policy).
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    pub clients: outbound::ClientPool,
    pub connect_timeout: Duration,
    pub max_redirects: usize,
    pub max_body_bytes: usize,
}

/// The validators of a stored entry, sent to revalidate it (RFC 9110 §13.1.1, §13.1.3).
#[derive(Debug, Clone, Default)]
pub(crate) struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// What the origin answered.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// 304 to our conditional request: the stored entry is still valid.
    NotModified { headers: HeaderMap },
    /// 200 with the full body.
    Body {
        headers: HeaderMap,
        body: Vec<u8>,
        final_url: Url,
    },
}

pub(crate) const USER_AGENT: &str = concat!("tandem-media/", env!("CARGO_PKG_VERSION"));

impl Fetcher {
    /// Fetches `url`, following at most `max_redirects` redirects. The caller bounds the total
    /// time.
    pub async fn fetch(&self, url: &Url, validators: &Validators) -> Result<Fetched, CacheError> {
        let mut current = url.clone();
        let mut redirects = 0;
        loop {
            let response = self.send(&current, validators).await?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                if !outbound::is_followed_redirect(status) {
                    return Err(CacheError::OriginStatus {
                        status: status.as_u16(),
                    });
                }
                if redirects == self.max_redirects {
                    return Err(CacheError::TooManyRedirects {
                        limit: self.max_redirects,
                    });
                }
                redirects += 1;
                let next = outbound::redirect_target(&current, response.headers())?;
                current = next;
                continue;
            }
            if status == StatusCode::NOT_MODIFIED && !validators.is_empty() {
                return Ok(Fetched::NotModified {
                    headers: response.headers().clone(),
                });
            }
            if status != StatusCode::OK {
                return Err(CacheError::OriginStatus {
                    status: status.as_u16(),
                });
            }
            let headers = response.headers().clone();
            let body = outbound::read_body(response, self.max_body_bytes).await?;
            return Ok(Fetched::Body {
                headers,
                body,
                final_url: current,
            });
        }
    }

    /// Sends one GET to `url` over a connection pinned to a vetted address.
    async fn send(
        &self,
        url: &Url,
        validators: &Validators,
    ) -> Result<reqwest::Response, CacheError> {
        let client = self.clients.client(url).await?;
        let mut request = client.get(url.clone()).header(
            header::ACCEPT,
            HeaderValue::from_static("audio/*, application/octet-stream;q=0.5"),
        );
        // RFC 9110 §13.1.1 / §13.1.3: both validators may be sent; the origin evaluates
        // If-None-Match first and ignores If-Modified-Since when it is present.
        if let Some(etag) = validators
            .etag
            .as_deref()
            .and_then(|value| HeaderValue::from_str(value).ok())
        {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = validators
            .last_modified
            .as_deref()
            .and_then(|value| HeaderValue::from_str(value).ok())
        {
            request = request.header(header::IF_MODIFIED_SINCE, date);
        }
        request.send().await.map_err(|error| {
            if error.is_timeout() {
                CacheError::Timeout {
                    limit: self.connect_timeout,
                }
            } else {
                connection_error(error)
            }
        })
    }
}

fn connection_error(error: reqwest::Error) -> CacheError {
    CacheError::Connection(Arc::new(error))
}
