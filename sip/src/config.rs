//! Runtime configuration of the SIP edge. The binary maps the `[sip]`, `[[trunks]]` and
//! `[[sip_users]]` sections of the TOML file onto this (secrets already resolved).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::auth::Algorithm;
use crate::message::{Uri, MAX_MESSAGE_SIZE_DEFAULT};
use crate::transaction::Timers;

/// Everything the SIP edge needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sockets to listen on.
    pub listen: Vec<Listen>,
    /// The address put in Via and Contact (and, later, SDP) instead of the bound one.
    pub advertised_address: Option<IpAddr>,
    /// RFC 3261 timer base values.
    pub timers: Timers,
    /// Largest message accepted on any transport.
    pub max_message_size: usize,
    /// A TCP connection with no traffic for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Concurrent TCP connections accepted from one source address.
    pub max_connections_per_ip: usize,
    /// Carriers whose source addresses may send INVITEs without authentication.
    pub trunks: Vec<Trunk>,
    /// Phones that REGISTER (and place calls) with digest authentication.
    pub users: Vec<User>,
    /// The digest realm.
    pub realm: String,
    /// Digest algorithms offered, most preferred first (RFC 8760 §2.4).
    pub digest_algorithms: Vec<Algorithm>,
    /// Registration interval bounds.
    pub registration: RegistrationLimits,
    /// Requests accepted per second from one source that is not a trunk (burst: twice
    /// that); `None` disables the limit. Requests over it are dropped unanswered.
    pub rate_limit_per_source: Option<u32>,
}

/// The default of [`Config::rate_limit_per_source`]: far above what a phone sends (a REGISTER
/// refresh, a call's handful of requests), far below a flood.
pub const RATE_LIMIT_PER_SOURCE_DEFAULT: u32 = 50;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![
                Listen {
                    transport: ListenTransport::Udp,
                    addr: SocketAddr::from(([0, 0, 0, 0], 5060)),
                },
                Listen {
                    transport: ListenTransport::Tcp,
                    addr: SocketAddr::from(([0, 0, 0, 0], 5060)),
                },
            ],
            advertised_address: None,
            timers: Timers::default(),
            max_message_size: MAX_MESSAGE_SIZE_DEFAULT,
            tcp_idle_timeout: Duration::from_secs(300),
            max_connections_per_ip: 64,
            trunks: Vec::new(),
            users: Vec::new(),
            realm: "tandem".to_owned(),
            digest_algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            registration: RegistrationLimits::default(),
            rate_limit_per_source: Some(RATE_LIMIT_PER_SOURCE_DEFAULT),
        }
    }
}

/// One listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// UDP or TCP.
    pub transport: ListenTransport,
    /// The address to bind.
    pub addr: SocketAddr,
}

/// The transports Tandem listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenTransport {
    /// Datagrams.
    Udp,
    /// Streams.
    Tcp,
}

/// A SIP trunk: a carrier identified by its source addresses.
#[derive(Debug, Clone)]
pub struct Trunk {
    /// A name for logs and metrics.
    pub name: String,
    /// Source networks accepted without authentication.
    pub allow: Vec<IpNet>,
    /// Where `<Dial><Number>` sends calls through this trunk.
    pub outbound_uri: Option<Uri>,
}

/// A SIP user (phone) with a digest password.
#[derive(Clone)]
pub struct User {
    /// The digest username (also the AOR user part).
    pub username: String,
    /// The password (a secret: never logged).
    pub password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Bounds on REGISTER intervals (RFC 3261 §10.2.1.1, §10.3 step 7).
#[derive(Debug, Clone, Copy)]
pub struct RegistrationLimits {
    /// Shorter requested intervals get 423 with Min-Expires.
    pub min_expires: Duration,
    /// Longer requested intervals are shortened to this.
    pub max_expires: Duration,
    /// Used when the request gives none.
    pub default_expires: Duration,
    /// Contacts kept per user.
    pub max_contacts_per_user: usize,
}

impl Default for RegistrationLimits {
    fn default() -> Self {
        RegistrationLimits {
            min_expires: Duration::from_secs(60),
            max_expires: Duration::from_secs(3600),
            default_expires: Duration::from_secs(3600),
            max_contacts_per_user: 10,
        }
    }
}

impl Config {
    /// The trunk whose allow-list contains `source`, if any.
    pub fn trunk_for(&self, source: IpAddr) -> Option<&Trunk> {
        self.trunks
            .iter()
            .find(|t| t.allow.iter().any(|net| net.contains(&source)))
    }
}
