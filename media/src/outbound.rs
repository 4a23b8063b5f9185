//! Outbound HTTP to URLs that users and applications name (prompt audio, call-instruction
//! webhooks, status callbacks): the one implementation of Tandem's server-side request forgery
//! defence, shared by the prompt cache's origin fetcher and the router's webhook client.
//!
//! The caller follows redirects by hand and, for every hop, checks the URL ([`check_url`]),
//! takes a client pinned to vetted addresses from a [`ClientPool`] (names are resolved here,
//! every address goes through [`AddressPolicy`], and the connection can only reach an address
//! that passed), resolves the next hop with [`redirect_target`], and reads the final body with
//! [`read_body`], which stops at a byte cap.
//!
//! Invariant: no proxy is ever used (a proxy would connect on our behalf to an address we never
//! vetted), and no redirect is followed by reqwest itself.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{redirect, StatusCode, Url};

use crate::cache::address::{AddressPolicy, Refusal};

/// The most addresses of one name that are considered; a name answering with more is cut here
/// (the rest add nothing but connection attempts).
const MAX_ADDRESSES: usize = 16;

/// Why an outbound request could not be prepared, or its body not read. Deliberately
/// exhaustive: each user maps every variant onto its own error, and a new variant should make
/// them decide.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundError {
    /// Caller: not an absolute URL with a host.
    #[error("not a valid absolute URL")]
    InvalidUrl,
    /// Caller: only `http` and `https` URLs are fetched.
    #[error("unsupported URL scheme (only http and https)")]
    UnsupportedScheme,
    /// Caller: the host resolves only to addresses the outbound policy refuses.
    #[error("refused to connect to {address}: {reason}")]
    RefusedAddress {
        /// The first refused address.
        address: IpAddr,
        /// Why it was refused.
        reason: Refusal,
    },
    /// Remote: the host name did not resolve (or resolved to no address).
    #[error("host did not resolve")]
    Resolve(#[source] Arc<std::io::Error>),
    /// Internal: the HTTP client could not be built (TLS backend initialisation).
    #[error("HTTP client could not be built")]
    Client(#[source] Arc<reqwest::Error>),
    /// Remote: a redirect without a usable `Location`.
    #[error("redirect without a valid Location")]
    InvalidRedirect,
    /// Remote: the body is larger than the cap.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// Remote: the connection failed while the body was being read.
    #[error("reading the body failed")]
    Body(#[source] Arc<reqwest::Error>),
}

/// Refuses anything but absolute `http` and `https` URLs with a host.
pub fn check_url(url: &Url) -> Result<(), OutboundError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundError::UnsupportedScheme);
    }
    if url.host().is_none() {
        return Err(OutboundError::InvalidUrl);
    }
    Ok(())
}

/// Clients pinned to vetted addresses, reused across requests so that keep-alive connections
/// are too (building a client, TLS configuration included, costs far more than a request).
///
/// For every request the host is resolved and its addresses vetted again; the client is
/// looked up by (host name, vetted addresses), so a name that starts resolving elsewhere gets
/// a new client pinned to the new addresses (no DNS rebinding through a reused client). All
/// IP-literal URLs share one client: their address is in the URL and was vetted. Cloning
/// shares the pool.
#[derive(Clone)]
pub struct ClientPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    policy: AddressPolicy,
    connect_timeout: Duration,
    user_agent: &'static str,
    clients: Mutex<HashMap<PoolKey, reqwest::Client>>,
}

/// A name and the addresses it was pinned to; `None` for the shared IP-literal client.
type PoolKey = Option<(String, Vec<SocketAddr>)>;

/// Clients kept at most; the pool is emptied when full (names are few in practice).
const MAX_POOLED_CLIENTS: usize = 256;

impl ClientPool {
    /// A pool whose clients connect only to addresses `policy` allows.
    pub fn new(policy: AddressPolicy, connect_timeout: Duration, user_agent: &'static str) -> Self {
        ClientPool {
            inner: Arc::new(PoolInner {
                policy,
                connect_timeout,
                user_agent,
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A client for one request to `url`: the URL checked, the host resolved and its addresses
    /// vetted now, and a client that can connect to those addresses only. Redirects and
    /// proxies are off.
    pub async fn client(&self, url: &Url) -> Result<reqwest::Client, OutboundError> {
        check_url(url)?;
        let addresses = vetted_addresses(url, self.inner.policy).await?;
        let key = match url.host() {
            Some(url::Host::Domain(domain)) => Some((domain.to_owned(), addresses)),
            _ => None,
        };
        if let Some(client) = self.lock().get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.inner.connect_timeout)
            .user_agent(self.inner.user_agent);
        if let Some((domain, addresses)) = &key {
            // Pin the name to the addresses vetted above: reqwest will not resolve it again, so
            // a DNS answer that changes between our check and the connect (rebinding) cannot
            // redirect the connection.
            builder = builder.resolve_to_addrs(domain, addresses);
        }
        let client = builder
            .build()
            .map_err(|error| OutboundError::Client(Arc::new(error)))?;
        let mut clients = self.lock();
        if clients.len() >= MAX_POOLED_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, reqwest::Client>> {
        // Plain data, never held across an await: a poisoned lock still holds usable clients.
        self.inner
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClientPool")
            .field("policy", &self.inner.policy)
            .field("clients", &self.lock().len())
            .finish()
    }
}

/// Resolves the URL's host and keeps the addresses `policy` allows. Fails with the first
/// refusal when every address is refused.
pub async fn vetted_addresses(
    url: &Url,
    policy: AddressPolicy,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let port = url
        .port_or_known_default()
        .ok_or(OutboundError::InvalidUrl)?;
    let resolved: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(address)) => vec![SocketAddr::new(IpAddr::V4(address), port)],
        Some(url::Host::Ipv6(address)) => vec![SocketAddr::new(IpAddr::V6(address), port)],
        Some(url::Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
            .await
            .map_err(|error| OutboundError::Resolve(Arc::new(error)))?
            .take(MAX_ADDRESSES)
            .collect(),
        None => return Err(OutboundError::InvalidUrl),
    };
    let mut first_refusal = None;
    let mut allowed = Vec::with_capacity(resolved.len());
    for address in resolved {
        match policy.check(address.ip()) {
            Ok(()) => allowed.push(address),
            Err(reason) => {
                first_refusal.get_or_insert(OutboundError::RefusedAddress {
                    address: address.ip(),
                    reason,
                });
            }
        }
    }
    match (allowed.is_empty(), first_refusal) {
        (false, _) => Ok(allowed),
        (true, Some(refusal)) => Err(refusal),
        (true, None) => Err(OutboundError::Resolve(Arc::new(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no addresses",
        )))),
    }
}

/// Whether `status` is a redirect that a client follows automatically (RFC 9110 §15.4.2,
/// §15.4.3, §15.4.4, §15.4.8, §15.4.9); 300, 304 and 305 are not.
pub fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The next hop of a redirect from `current` whose response carries `headers`: `Location`
/// resolved against `current`, without fragment, checked like the first URL.
pub fn redirect_target(current: &Url, headers: &HeaderMap) -> Result<Url, OutboundError> {
    // RFC 9110 §10.2.2: Location may be relative to the request's URL.
    let location = headers
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(OutboundError::InvalidRedirect)?;
    let mut next = current
        .join(location)
        .map_err(|_| OutboundError::InvalidRedirect)?;
    next.set_fragment(None);
    check_url(&next)?;
    Ok(next)
}

/// Reads the body chunk by chunk, refusing as soon as the announced length or the running count
/// passes `limit`, so an oversized body is never read whole.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, OutboundError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(OutboundError::TooLarge { limit });
    }
    // The announced length only sizes the first allocation; the count below is what binds.
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| OutboundError::Body(Arc::new(error)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(OutboundError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy {
        allow_private: false,
        allow_loopback: false,
    };

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn only_http_and_https_with_a_host() {
        assert!(check_url(&url("http://example.com/a")).is_ok());
        assert!(check_url(&url("https://example.com/a")).is_ok());
        assert!(matches!(
            check_url(&url("ftp://example.com/a")),
            Err(OutboundError::UnsupportedScheme)
        ));
        assert!(matches!(
            check_url(&url("file:///etc/passwd")),
            Err(OutboundError::UnsupportedScheme)
        ));
    }

    #[tokio::test]
    async fn literal_addresses_are_vetted_without_resolution() {
        let error = vetted_addresses(&url("http://169.254.169.254/latest"), STRICT).await;
        assert!(matches!(
            error,
            Err(OutboundError::RefusedAddress {
                reason: Refusal::Metadata,
                ..
            })
        ));
        let error = vetted_addresses(&url("http://[::1]:8080/"), STRICT).await;
        assert!(matches!(
            error,
            Err(OutboundError::RefusedAddress {
                reason: Refusal::Loopback,
                ..
            })
        ));
        let allowed = vetted_addresses(&url("https://93.184.215.14/"), STRICT).await;
        assert_eq!(
            allowed.ok(),
            Some(vec![SocketAddr::from(([93, 184, 215, 14], 443))])
        );
    }

    #[test]
    fn redirect_targets_resolve_relative_locations_and_are_checked() {
        let current = url("http://example.com/a/b?x=1");
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, header::HeaderValue::from_static("../c#f"));
        assert_eq!(
            redirect_target(&current, &headers).ok(),
            Some(url("http://example.com/c"))
        );
        headers.insert(
            header::LOCATION,
            header::HeaderValue::from_static("gopher://example.com/"),
        );
        assert!(matches!(
            redirect_target(&current, &headers),
            Err(OutboundError::UnsupportedScheme)
        ));
        headers.remove(header::LOCATION);
        assert!(matches!(
            redirect_target(&current, &headers),
            Err(OutboundError::InvalidRedirect)
        ));
    }

    #[test]
    fn followed_redirects() {
        for code in [301, 302, 303, 307, 308] {
            assert!(is_followed_redirect(
                StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
            ));
        }
        for code in [200, 300, 304, 305, 400] {
            assert!(!is_followed_redirect(
                StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
            ));
        }
    }
}
