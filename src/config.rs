//! Tandem's configuration: the TOML file schema and its resolution into each subsystem's own
//! runtime `Config` (`sip::Config`, `router::Config`, ...), as linkerd and pingora do it.
//!
//! [`load`] reads the file (or the embedded defaults), then [`AppConfig`] holds everything
//! resolved: defaults applied, addresses and URLs parsed, secrets read from their files or
//! environment variables. Every error names the offending key by its full dotted path
//! (`sip.listen[1]`, `numbers[0].voice_url`); the binary prints it and exits with 64.
//!
//! Relative paths (`data_dir`, `media.cache_dir`, `*_file`) are relative to the working
//! directory, like the embedded default `./tandem-data`.
//!
//! Additions to the product contract's keys: `sip.max_message_size`, `sip.tcp_idle_timeout_s`,
//! `sip.max_connections_per_ip`, `sip.realm`, `sip.digest_algorithms`, `sip.min_expires_s`, `sip.max_expires_s`,
//! `[log] format`, `[drain] grace_s`. With no `[[trunks]]` at all a trunk named `local` accepts
//! 127.0.0.0/8 and ::1 (see [`DEFAULT_TRUNK_NAME`]); `trunks = []` configures none.

mod error;
mod file;
mod render;
mod resolve;
mod secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::logging::LogFormat;

pub use error::{ConfigError, Problem};
pub use secret::{Secret, REDACTED};

/// The environment variable that names the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "TANDEM_CONFIG";

/// The trunk configured when the file has no `[[trunks]]` at all. It accepts calls from the
/// loopback networks (127.0.0.0/8 and ::1/128) so that the bundled demo works from the same
/// machine out of the box, while any other source gets 403 until real trunks are configured.
pub const DEFAULT_TRUNK_NAME: &str = "local";

/// Everything the binary needs, resolved.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The file this was read from; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    /// Where the media cache, generated keys and persistent registrations live.
    pub data_dir: PathBuf,
    /// The SIP edge (`[sip]`, `[[trunks]]`, `[[sip_users]]`).
    pub sip: sip::Config,
    /// The call router (`[account]`, `[[numbers]]`).
    pub router: router::Config,
    /// The HTTP API and WebSocket listener (`[http]`).
    pub http: HttpConfig,
    /// Access-token verification keys (`[[auth.keys]]`), in file order. Empty: a development
    /// HS256 key is generated into `data_dir` on first start.
    pub auth_keys: Vec<AuthKey>,
    /// The media layer (`[media]`).
    pub media: MediaConfig,
    /// The WebSocket gateway and presence registry (`[presence]`).
    pub presence: PresenceConfig,
    /// Logging (`[log]`).
    pub log: LogConfig,
    /// How long a shutdown waits for calls in progress (`[drain] grace_s`).
    pub drain_grace: Duration,
}

/// Limits of the presence layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceConfig {
    /// Devices per identity and subscriptions per device.
    pub registry: presence::registry::Config,
    /// WebSocket timeouts, sizes and per-source cap.
    pub gateway: presence::gateway::GatewayConfig,
}

/// The HTTP API and WebSocket listener.
// Kept here until the HTTP layer has a crate of its own to own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The address to bind.
    pub listen: SocketAddr,
    /// The bearer token of `/v1` routes. `None`: one is generated into `data_dir` on first start.
    pub api_key: Option<Secret>,
}

/// One access-token verification key.
// Kept here until the presence crate exists to own it.
#[derive(Debug, Clone)]
pub struct AuthKey {
    /// The key id: a token's `kid` (and `iss`) selects this key.
    pub id: String,
    /// The only algorithm accepted for this key.
    pub algorithm: Algorithm,
    /// The secret or public key.
    pub material: KeyMaterial,
    /// The verification key built from them (checked when the configuration is loaded).
    pub key: presence::token::Key,
}

/// A JWS signature algorithm (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Algorithm {
    /// HMAC with SHA-256: a shared secret.
    #[serde(rename = "HS256")]
    Hs256,
    /// ECDSA on P-256 with SHA-256: a public key.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519: a public key.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl Algorithm {
    /// The name used in the file and in a JWS header's `alg`.
    pub fn as_str(self) -> &'static str {
        presence::token::Algorithm::from(self).as_str()
    }
}

// `key` is derived from the other fields, so they alone decide equality.
impl PartialEq for AuthKey {
    fn eq(&self, other: &Self) -> bool {
        (&self.id, self.algorithm, &self.material) == (&other.id, other.algorithm, &other.material)
    }
}

impl Eq for AuthKey {}

impl From<Algorithm> for presence::token::Algorithm {
    fn from(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Hs256 => presence::token::Algorithm::Hs256,
            Algorithm::Es256 => presence::token::Algorithm::Es256,
            Algorithm::EdDsa => presence::token::Algorithm::EdDsa,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What verifies a key's signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// The shared HS256 secret (at least 32 bytes).
    Secret(Secret),
    /// A PEM public key for ES256 or EdDSA, read from `path` (its content is not parsed here).
    PublicKey {
        /// The `public_key_file` it was read from.
        path: PathBuf,
        /// The file's content.
        pem: String,
    },
}

/// The media layer.
// Kept here until the media crate has a runtime configuration of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Where processed prompts are stored.
    pub cache_dir: PathBuf,
    /// The cache is kept under this size.
    pub cache_max_bytes: u64,
    /// Local ports for RTP (even) and RTCP (the odd port above).
    pub rtp_ports: RtpPorts,
}

/// An inclusive range of UDP ports for media, written `START-END`: START is even (RFC 3550 §11:
/// RTP takes an even port and RTCP the next odd one) and below END.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPorts {
    first: u16,
    last: u16,
}

impl RtpPorts {
    /// The first port of the range (even).
    pub fn first(self) -> u16 {
        self.first
    }

    /// The last port of the range (inclusive).
    pub fn last(self) -> u16 {
        self.last
    }
}

impl Default for RtpPorts {
    fn default() -> Self {
        RtpPorts {
            first: 20000,
            last: 29999,
        }
    }
}

impl FromStr for RtpPorts {
    type Err = Problem;

    fn from_str(text: &str) -> Result<RtpPorts, Problem> {
        let malformed = || Problem::PortRange {
            found: text.to_owned(),
        };
        let (first, last) = text.split_once('-').ok_or_else(malformed)?;
        let first: u16 = first.parse().map_err(|_| malformed())?;
        let last: u16 = last.parse().map_err(|_| malformed())?;
        if first == 0 || first >= last {
            return Err(Problem::PortRangeOrder { first, last });
        }
        // RFC 3550 §11: RTP on an even port, RTCP on the odd port above it.
        if !first.is_multiple_of(2) {
            return Err(Problem::OddFirstRtpPort { first });
        }
        Ok(RtpPorts { first, last })
    }
}

impl std::fmt::Display for RtpPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Logging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// Human-readable lines or JSON (the `--log-format` flag overrides it).
    pub format: LogFormat,
}

/// Loads the configuration: from `path`, else from the file named by `TANDEM_CONFIG`, else the
/// embedded defaults (which need no file at all).
pub fn load(path: Option<&Path>) -> Result<AppConfig, ConfigError> {
    match locate(path) {
        Some(path) => load_file(&path),
        None => Ok(defaults()),
    }
}

/// The file [`load`] reads for `path`: `path` itself, else `TANDEM_CONFIG` when set and not empty.
pub fn locate(path: Option<&Path>) -> Option<PathBuf> {
    path.map(Path::to_owned).or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    })
}

/// Reads and resolves one configuration file.
pub fn load_file(path: &Path) -> Result<AppConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut config = parse(&text)?;
    config.source = Some(path.to_owned());
    Ok(config)
}

/// Resolves configuration text (`*_env` keys read the process environment).
pub fn parse(text: &str) -> Result<AppConfig, ConfigError> {
    parse_with_environment(text, &|name| std::env::var(name))
}

/// The embedded defaults: what `tandem serve` runs with when no file is given.
pub fn defaults() -> AppConfig {
    resolve::defaults()
}

impl AppConfig {
    /// The resolved configuration as TOML in the file's own schema, every default spelled out and
    /// every secret replaced by [`REDACTED`] (what `check-config` prints).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        render::to_toml(self)
    }
}

/// [`parse`] with a given environment, so tests need not touch the process's.
pub(crate) fn parse_with_environment(
    text: &str,
    environment: secret::Environment<'_>,
) -> Result<AppConfig, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    let file: file::File = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        let inner = error.into_inner();
        deserialize_error(text, key, &inner)
    })?;
    resolve::resolve(file, environment)
}

/// Classifies a deserialization error: syntax, unknown key, or a value of the wrong type.
fn deserialize_error(text: &str, key: String, error: &toml::de::Error) -> ConfigError {
    let line = error
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| before.matches('\n').count() + 1);
    // toml's messages may span lines ("invalid string\nexpected ..."); keep the report on one.
    let message = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    // serde's derive reports unknown keys as "unknown field `NAME`, expected ..." (see
    // serde::de::Error::unknown_field); serde_path_to_error already appended NAME to the path.
    if message.starts_with("unknown field `") {
        return ConfigError::UnknownKey { key, line };
    }
    // An empty path (".") means the error is not about one value: the text is not TOML.
    if key == "." {
        return ConfigError::Syntax { line, message };
    }
    ConfigError::Type { key, message, line }
}

#[cfg(test)]
mod tests;
