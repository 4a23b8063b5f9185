//! The origin fetcher of the prompt cache: one GET (conditional when we hold validators),
//! redirects followed by hand so every hop is vetted, names resolved here and each connection
//! pinned to a vetted address, and the body read with a running byte count that stops at the
//! cap. Only `http` and `https`; no proxies (a proxy would bypass the address pinning).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{redirect, StatusCode, Url};

use super::address::AddressPolicy;
use super::CacheError;

/// Fetch limits and the outbound-address policy.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    pub policy: AddressPolicy,
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

const USER_AGENT: &str = concat!("tandem-media/", env!("CARGO_PKG_VERSION"));

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
                if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
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
                // RFC 9110 §10.2.2: Location may be relative to the request's URL.
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or(CacheError::InvalidRedirect)?;
                let mut next = current
                    .join(location)
                    .map_err(|_| CacheError::InvalidRedirect)?;
                next.set_fragment(None);
                check_scheme(&next)?;
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
            let body = self.read_body(response).await?;
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
        let addresses = self.vetted_addresses(url).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.connect_timeout)
            .user_agent(USER_AGENT);
        if let Some(url::Host::Domain(domain)) = url.host() {
            // Pin the name to the addresses vetted above: reqwest will not resolve it again,
            // so a DNS answer that changes between our check and the connect (rebinding)
            // cannot redirect the connection.
            builder = builder.resolve_to_addrs(domain, &addresses);
        }
        let client = builder.build().map_err(connection_error)?;
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

    /// Resolves the URL's host and keeps the addresses the policy allows.
    async fn vetted_addresses(&self, url: &Url) -> Result<Vec<SocketAddr>, CacheError> {
        let port = url.port_or_known_default().ok_or(CacheError::InvalidUrl)?;
        let resolved: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(address)) => vec![SocketAddr::new(IpAddr::V4(address), port)],
            Some(url::Host::Ipv6(address)) => vec![SocketAddr::new(IpAddr::V6(address), port)],
            Some(url::Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
                .await
                .map_err(|error| CacheError::Resolve(Arc::new(error)))?
                .take(16)
                .collect(),
            None => return Err(CacheError::InvalidUrl),
        };
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(resolved.len());
        for address in resolved {
            match self.policy.check(address.ip()) {
                Ok(()) => allowed.push(address),
                Err(reason) => {
                    first_refusal.get_or_insert(CacheError::RefusedAddress {
                        address: address.ip(),
                        reason,
                    });
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (false, _) => Ok(allowed),
            (true, Some(refusal)) => Err(refusal),
            (true, None) => Err(CacheError::Resolve(Arc::new(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no addresses",
            )))),
        }
    }

    /// Reads the body chunk by chunk, refusing as soon as the running count passes the cap.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, CacheError> {
        let limit = self.max_body_bytes;
        let announced = response.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(CacheError::TooLarge { limit });
        }
        // The announced length only sizes the first allocation; the count below is what binds.
        let mut body = Vec::with_capacity(announced as usize);
        while let Some(chunk) = response.chunk().await.map_err(connection_error)? {
            if body.len() + chunk.len() > limit {
                return Err(CacheError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Refuses anything but `http` and `https`, and URLs without a host.
pub(crate) fn check_scheme(url: &Url) -> Result<(), CacheError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CacheError::UnsupportedScheme);
    }
    if url.host().is_none() {
        return Err(CacheError::InvalidUrl);
    }
    Ok(())
}

fn connection_error(error: reqwest::Error) -> CacheError {
    CacheError::Connection(Arc::new(error))
}
