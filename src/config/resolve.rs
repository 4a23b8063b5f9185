//! Resolution: from the file schema to [`AppConfig`], applying defaults and checking every value.
//!
//! Checks that need the whole file (duplicates, `t2_ms >= t1_ms`) happen here too, so that the
//! subsystems receive configurations they can trust.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use sip::auth::Algorithm as DigestAlgorithm;
use sip::config::{Listen, ListenTransport, Trunk, User};
use sip::message::Uri;

use super::file::{self, File};
use super::secret::{Environment, SecretSources};
use super::{
    Algorithm, AppConfig, AuthKey, ConfigError, HttpConfig, KeyMaterial, LogConfig, MediaConfig,
    PresenceConfig, Problem, RtpPorts, DEFAULT_TRUNK_NAME,
};

/// `data_dir` when not set.
pub(super) const DEFAULT_DATA_DIR: &str = "./tandem-data";
/// `http.listen` when not set.
pub(super) const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// `media.cache_max_bytes` when not set: 1 GiB.
pub(super) const DEFAULT_CACHE_MAX_BYTES: u64 = 1 << 30;
/// `drain.grace_s` when not set.
pub(super) const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(30);
/// The registration interval used when a REGISTER names none, before clamping to the bounds.
const PREFERRED_DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);

// Bounds. Timers and intervals are capped so that arithmetic on `Instant`s in the protocol cores
// can never overflow, however the file is written.
const MAX_TIMER_MS: u64 = 60_000;
// RFC 3261 §18.1.1: requests up to 1300 bytes may always go over UDP, so a smaller limit would
// refuse messages peers legitimately send.
const MIN_MESSAGE_SIZE: u64 = 1300;
const MAX_MESSAGE_SIZE: u64 = 16 * 1024 * 1024;
const MAX_TCP_IDLE_TIMEOUT_S: u64 = 24 * 3600;
const MAX_CONNECTIONS_PER_IP: u64 = 65_535;
/// The highest `[sip] rate_limit_per_source` accepted (requests per second).
const MAX_RATE_LIMIT: u64 = 1_000_000;
const MAX_EXPIRES_S: u64 = 7 * 24 * 3600;
const MAX_DRAIN_GRACE_S: u64 = 3600;
// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// The embedded defaults: an empty file, resolved.
pub(super) fn defaults() -> AppConfig {
    let no_environment = |_: &str| Err(std::env::VarError::NotPresent);
    #[allow(clippy::expect_used)]
    // Invariant: an empty file sets no secret (so nothing is read) and every default is within
    // its bounds; tests::embedded_defaults_match_the_product_contract checks it.
    resolve(File::default(), &no_environment).expect("the embedded defaults resolve")
}

/// Resolves a parsed file.
pub(super) fn resolve(file: File, environment: Environment<'_>) -> Result<AppConfig, ConfigError> {
    let data_dir = match file.data_dir {
        Some(path) if path.as_os_str().is_empty() => {
            return Err(invalid("data_dir", Problem::Empty))
        }
        Some(path) => path,
        None => PathBuf::from(DEFAULT_DATA_DIR),
    };
    let mut sip = sip_config(file.sip)?;
    sip.trunks = trunks(file.trunks)?;
    sip.users = sip_users(file.sip_users, environment)?;
    let http = http(file.http, environment)?;
    let auth_keys = auth_keys(file.auth.keys, environment)?;
    let media = media(file.media, &data_dir)?;
    let router = router::Config {
        numbers: numbers(file.numbers)?,
        account: account(file.account, environment)?,
        // Derived from the open-files limit at start; tests set it directly.
        max_calls: None,
    };
    let presence = presence_config(&file.presence)?;
    let drain_grace = Duration::from_secs(bounded(
        "drain.grace_s",
        file.drain.grace_s,
        DEFAULT_DRAIN_GRACE.as_secs(),
        0,
        MAX_DRAIN_GRACE_S,
    )?);
    Ok(AppConfig {
        source: None,
        data_dir,
        sip,
        router,
        http,
        auth_keys,
        media,
        presence,
        log: LogConfig {
            format: file.log.format.unwrap_or_default(),
        },
        drain_grace,
    })
}

/// The trunk used when the file has no `[[trunks]]` (see [`DEFAULT_TRUNK_NAME`]).
pub(super) fn default_trunk() -> Trunk {
    Trunk {
        name: DEFAULT_TRUNK_NAME.to_owned(),
        allow: vec![
            IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
            IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        ],
        outbound_uri: None,
    }
}

fn sip_config(section: file::Sip) -> Result<sip::Config, ConfigError> {
    // Start from the SIP crate's defaults so that fields it adds later keep sensible values.
    let mut config = sip::Config::default();
    if let Some(entries) = section.listen {
        if entries.is_empty() {
            return Err(invalid("sip.listen", Problem::Empty));
        }
        let mut listen: Vec<Listen> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let key = format!("sip.listen[{index}]");
            let parsed = listen_entry(entry).map_err(|problem| invalid(&key, problem))?;
            if let Some(first) = listen.iter().position(|other| *other == parsed) {
                return Err(invalid(
                    &key,
                    Problem::Duplicate {
                        found: entry.clone(),
                        first: format!("sip.listen[{first}]"),
                    },
                ));
            }
            listen.push(parsed);
        }
        config.listen = listen;
    }
    if let Some(address) = section.advertised_address {
        let parsed = address.parse::<IpAddr>().map_err(|_| {
            invalid(
                "sip.advertised_address",
                Problem::IpAddress { found: address },
            )
        })?;
        config.advertised_address = Some(parsed);
    }

    let default_timers = config.timers;
    let t1 = bounded_ms(
        "sip.t1_ms",
        section.t1_ms,
        default_timers.t1,
        1,
        MAX_TIMER_MS,
    )?;
    let t2 = bounded_ms(
        "sip.t2_ms",
        section.t2_ms,
        default_timers.t2,
        1,
        MAX_TIMER_MS,
    )?;
    let t4 = bounded_ms(
        "sip.t4_ms",
        section.t4_ms,
        default_timers.t4,
        1,
        MAX_TIMER_MS,
    )?;
    // RFC 3261 §17.1.2.2: T2 caps the doubling of the retransmit interval that starts at T1.
    if t2 < t1 {
        return Err(invalid(
            "sip.t2_ms",
            Problem::LessThan {
                value: t2,
                other: "sip.t1_ms".to_owned(),
                other_value: t1,
            },
        ));
    }
    config.timers.t1 = Duration::from_millis(t1);
    config.timers.t2 = Duration::from_millis(t2);
    config.timers.t4 = Duration::from_millis(t4);

    config.max_message_size = to_usize(bounded(
        "sip.max_message_size",
        section.max_message_size,
        config.max_message_size as u64,
        MIN_MESSAGE_SIZE,
        MAX_MESSAGE_SIZE,
    )?);
    config.tcp_idle_timeout = Duration::from_secs(bounded(
        "sip.tcp_idle_timeout_s",
        section.tcp_idle_timeout_s,
        config.tcp_idle_timeout.as_secs(),
        1,
        MAX_TCP_IDLE_TIMEOUT_S,
    )?);
    config.max_connections_per_ip = to_usize(bounded(
        "sip.max_connections_per_ip",
        section.max_connections_per_ip,
        config.max_connections_per_ip as u64,
        1,
        MAX_CONNECTIONS_PER_IP,
    )?);
    if let Some(realm) = section.realm {
        if realm.is_empty() {
            return Err(invalid("sip.realm", Problem::Empty));
        }
        // RFC 3261 §25.1 / RFC 2617 §3.2.1: the realm is sent as a quoted-string; keeping it to
        // printable characters without quote or backslash needs no escaping anywhere.
        if !realm
            .chars()
            .all(|c| !c.is_control() && c != '"' && c != '\\')
        {
            return Err(invalid(
                "sip.realm",
                Problem::Characters {
                    found: realm,
                    allowed: "printable characters except \" and \\",
                },
            ));
        }
        config.realm = realm;
    }

    if let Some(names) = section.digest_algorithms {
        config.digest_algorithms = digest_algorithms(&names)?;
    }
    if let Some(rate) = section.rate_limit_per_source {
        // 0 turns the limit off.
        let rate = bounded(
            "sip.rate_limit_per_source",
            Some(rate),
            0,
            0,
            MAX_RATE_LIMIT,
        )?;
        config.rate_limit_per_source = (rate > 0).then_some(rate as u32);
    }

    let min_expires = bounded(
        "sip.min_expires_s",
        section.min_expires_s,
        config.registration.min_expires.as_secs(),
        1,
        MAX_EXPIRES_S,
    )?;
    let max_expires = bounded(
        "sip.max_expires_s",
        section.max_expires_s,
        config.registration.max_expires.as_secs(),
        1,
        MAX_EXPIRES_S,
    )?;
    if max_expires < min_expires {
        return Err(invalid(
            "sip.max_expires_s",
            Problem::LessThan {
                value: max_expires,
                other: "sip.min_expires_s".to_owned(),
                other_value: min_expires,
            },
        ));
    }
    let min_expires = Duration::from_secs(min_expires);
    let max_expires = Duration::from_secs(max_expires);
    config.registration.min_expires = min_expires;
    config.registration.max_expires = max_expires;
    config.registration.default_expires = PREFERRED_DEFAULT_EXPIRES.clamp(min_expires, max_expires);
    Ok(config)
}

/// The digest algorithms offered in challenges, most preferred first (RFC 8760 §2.4: one
/// WWW-Authenticate per algorithm, in order of preference).
fn digest_algorithms(names: &[String]) -> Result<Vec<DigestAlgorithm>, ConfigError> {
    if names.is_empty() {
        return Err(invalid("sip.digest_algorithms", Problem::Empty));
    }
    let mut algorithms: Vec<DigestAlgorithm> = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let key = format!("sip.digest_algorithms[{index}]");
        let algorithm = DigestAlgorithm::parse(name).ok_or_else(|| {
            invalid(
                &key,
                Problem::DigestAlgorithm {
                    found: name.clone(),
                },
            )
        })?;
        if let Some(first) = algorithms.iter().position(|other| *other == algorithm) {
            return Err(invalid(
                &key,
                Problem::Duplicate {
                    found: name.clone(),
                    first: format!("sip.digest_algorithms[{first}]"),
                },
            ));
        }
        algorithms.push(algorithm);
    }
    Ok(algorithms)
}

/// `udp:ADDRESS:PORT` or `tcp:ADDRESS:PORT` (IPv6 in brackets).
fn listen_entry(entry: &str) -> Result<Listen, Problem> {
    let (transport, address) = entry
        .split_once(':')
        .ok_or_else(|| Problem::MissingTransport {
            found: entry.to_owned(),
        })?;
    let transport = match transport.to_ascii_lowercase().as_str() {
        "udp" => ListenTransport::Udp,
        "tcp" => ListenTransport::Tcp,
        // `0.0.0.0:5060` or `[::]:5060` alone: the part before the first colon is no transport.
        _ if address.parse::<u16>().is_ok() || transport.starts_with('[') => {
            return Err(Problem::MissingTransport {
                found: entry.to_owned(),
            })
        }
        _ => {
            return Err(Problem::UnknownTransport {
                found: transport.to_owned(),
            })
        }
    };
    let addr = address
        .parse::<SocketAddr>()
        .map_err(|_| Problem::SocketAddress {
            found: address.to_owned(),
        })?;
    Ok(Listen { transport, addr })
}

fn trunks(entries: Option<Vec<file::Trunk>>) -> Result<Vec<Trunk>, ConfigError> {
    let Some(entries) = entries else {
        return Ok(vec![default_trunk()]);
    };
    let mut trunks: Vec<Trunk> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let prefix = format!("trunks[{index}]");
        let name = required(&prefix, "name", entry.name)?;
        if name.is_empty() {
            return Err(invalid(format!("{prefix}.name"), Problem::Empty));
        }
        if let Some(first) = trunks.iter().position(|trunk| trunk.name == name) {
            return Err(invalid(
                format!("{prefix}.name"),
                Problem::Duplicate {
                    found: name,
                    first: format!("trunks[{first}].name"),
                },
            ));
        }
        let allow_entries = required(&prefix, "allow", entry.allow)?;
        if allow_entries.is_empty() {
            return Err(invalid(format!("{prefix}.allow"), Problem::Empty));
        }
        let allow = allow_entries
            .iter()
            .enumerate()
            .map(|(position, text)| {
                network(text)
                    .map_err(|problem| invalid(format!("{prefix}.allow[{position}]"), problem))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outbound_uri = entry
            .outbound_uri
            .map(|text| {
                sip_uri(&text).map_err(|problem| invalid(format!("{prefix}.outbound_uri"), problem))
            })
            .transpose()?;
        trunks.push(Trunk {
            name,
            allow,
            outbound_uri,
        });
    }
    Ok(trunks)
}

/// A network in CIDR notation, or a single address (a /32 or /128). Host bits are cleared, so
/// `198.51.100.7/24` means `198.51.100.0/24`.
fn network(text: &str) -> Result<IpNet, Problem> {
    let parsed = if text.contains('/') {
        text.parse::<IpNet>().ok()
    } else {
        text.parse::<IpAddr>().ok().map(IpNet::from)
    };
    parsed
        .map(|net| net.trunc())
        .ok_or_else(|| Problem::Network {
            found: text.to_owned(),
        })
}

fn sip_uri(text: &str) -> Result<Uri, Problem> {
    let uri = Uri::parse(text).map_err(|reason| Problem::SipUri {
        found: text.to_owned(),
        reason,
    })?;
    if uri.as_sip().is_none() {
        return Err(Problem::SipUri {
            found: text.to_owned(),
            reason: "calls can only be sent to sip: or sips: URIs",
        });
    }
    Ok(uri)
}

fn sip_users(
    entries: Vec<file::SipUser>,
    environment: Environment<'_>,
) -> Result<Vec<User>, ConfigError> {
    let mut users: Vec<User> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let prefix = format!("sip_users[{index}]");
        let username = required(&prefix, "username", entry.username)?;
        let username_key = format!("{prefix}.username");
        if username.is_empty() {
            return Err(invalid(username_key, Problem::Empty));
        }
        // RFC 3261 §25.1: the user part of the AOR, unescaped characters only (no `%`), which
        // also keeps the digest `username` quoted-string free of quotes and backslashes.
        if !username.bytes().all(is_plain_user_char) {
            return Err(invalid(
                username_key,
                Problem::Characters {
                    found: username,
                    allowed: "letters, digits and -_.!~*'()&=+$,;?/",
                },
            ));
        }
        if let Some(first) = users.iter().position(|user| user.username == username) {
            return Err(invalid(
                username_key,
                Problem::Duplicate {
                    found: username,
                    first: format!("sip_users[{first}].username"),
                },
            ));
        }
        let password_key = format!("{prefix}.password");
        let password = SecretSources {
            key: &password_key,
            inline: entry.password.as_deref(),
            file: entry.password_file.as_deref(),
            env: entry.password_env.as_deref(),
        }
        .resolve(environment)?
        .ok_or(ConfigError::Missing { key: password_key })?;
        users.push(User {
            username,
            password: password.expose().to_owned(),
        });
    }
    Ok(users)
}

fn is_plain_user_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&byte)
}

fn http(section: file::Http, environment: Environment<'_>) -> Result<HttpConfig, ConfigError> {
    let listen = match section.listen {
        Some(text) => text
            .parse::<SocketAddr>()
            .map_err(|_| invalid("http.listen", Problem::SocketAddress { found: text }))?,
        None => DEFAULT_HTTP_LISTEN,
    };
    let api_key = SecretSources {
        key: "http.api_key",
        inline: section.api_key.as_deref(),
        file: section.api_key_file.as_deref(),
        env: section.api_key_env.as_deref(),
    }
    .resolve(environment)?;
    Ok(HttpConfig { listen, api_key })
}

fn auth_keys(
    entries: Vec<file::AuthKey>,
    environment: Environment<'_>,
) -> Result<Vec<AuthKey>, ConfigError> {
    let mut keys: Vec<AuthKey> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let prefix = format!("auth.keys[{index}]");
        let id = required(&prefix, "id", entry.id)?;
        let id_key = format!("{prefix}.id");
        if id.is_empty() {
            return Err(invalid(id_key, Problem::Empty));
        }
        // The id travels in JWT headers and log lines: keep it to visible ASCII.
        if !id.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(invalid(
                id_key,
                Problem::Characters {
                    found: id,
                    allowed: "visible ASCII characters",
                },
            ));
        }
        if let Some(first) = keys.iter().position(|key| key.id == id) {
            return Err(invalid(
                id_key,
                Problem::Duplicate {
                    found: id,
                    first: format!("auth.keys[{first}].id"),
                },
            ));
        }
        let algorithm = required(&prefix, "algorithm", entry.algorithm)?;
        let secret_key = format!("{prefix}.secret");
        let secret_sources = SecretSources {
            key: &secret_key,
            inline: entry.secret.as_deref(),
            file: entry.secret_file.as_deref(),
            env: entry.secret_env.as_deref(),
        };
        let material = match algorithm {
            Algorithm::Hs256 => {
                if entry.public_key_file.is_some() {
                    return Err(invalid(
                        format!("{prefix}.public_key_file"),
                        Problem::NotForAlgorithm {
                            algorithm,
                            hint: "set secret, secret_file or secret_env",
                        },
                    ));
                }
                let secret =
                    secret_sources
                        .resolve(environment)?
                        .ok_or_else(|| ConfigError::Missing {
                            key: secret_key.clone(),
                        })?;
                let length = secret.expose().len();
                if length < MIN_HMAC_SECRET_BYTES {
                    return Err(invalid(secret_key, Problem::ShortSecret { length }));
                }
                KeyMaterial::Secret(secret)
            }
            Algorithm::Es256 | Algorithm::EdDsa => {
                let set_secret = [
                    (entry.secret.is_some(), secret_key.clone()),
                    (entry.secret_file.is_some(), format!("{secret_key}_file")),
                    (entry.secret_env.is_some(), format!("{secret_key}_env")),
                ]
                .into_iter()
                .find_map(|(is_set, key)| is_set.then_some(key));
                if let Some(key) = set_secret {
                    return Err(invalid(
                        key,
                        Problem::NotForAlgorithm {
                            algorithm,
                            hint: "set public_key_file",
                        },
                    ));
                }
                let path = required(&prefix, "public_key_file", entry.public_key_file)?;
                let path_key = format!("{prefix}.public_key_file");
                if path.as_os_str().is_empty() {
                    return Err(invalid(path_key, Problem::Empty));
                }
                let pem =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::FileRead {
                        key: path_key,
                        path: path.clone(),
                        source,
                    })?;
                KeyMaterial::PublicKey { path, pem }
            }
        };
        // Parse the key now, so that a bad PEM or secret is a configuration error naming the
        // key rather than a failure at the first token.
        let bytes = match &material {
            KeyMaterial::Secret(secret) => secret.expose().as_bytes(),
            KeyMaterial::PublicKey { pem, .. } => pem.as_bytes(),
        };
        let key = presence::token::Key::new(id.clone(), algorithm.into(), bytes)
            .map_err(|error| invalid(prefix.clone(), Problem::Key(error)))?;
        keys.push(AuthKey {
            id,
            algorithm,
            material,
            key,
        });
    }
    Ok(keys)
}

fn media(section: file::Media, data_dir: &std::path::Path) -> Result<MediaConfig, ConfigError> {
    let cache_dir = match section.cache_dir {
        Some(path) if path.as_os_str().is_empty() => {
            return Err(invalid("media.cache_dir", Problem::Empty))
        }
        Some(path) => path,
        None => data_dir.join("media"),
    };
    let cache_max_bytes = match section.cache_max_bytes {
        Some(0) => return Err(invalid("media.cache_max_bytes", Problem::Zero)),
        Some(bytes) => bytes,
        None => DEFAULT_CACHE_MAX_BYTES,
    };
    let rtp_ports = match section.rtp_ports {
        Some(text) => text
            .parse::<RtpPorts>()
            .map_err(|problem| invalid("media.rtp_ports", problem))?,
        None => RtpPorts::default(),
    };
    Ok(MediaConfig {
        cache_dir,
        cache_max_bytes,
        rtp_ports,
    })
}

fn account(
    section: file::Account,
    environment: Environment<'_>,
) -> Result<router::config::Account, ConfigError> {
    let sid = match section.sid {
        Some(sid) if is_account_sid(&sid) => sid,
        Some(sid) => return Err(invalid("account.sid", Problem::AccountSid { found: sid })),
        None => router::config::DEFAULT_ACCOUNT_SID.to_owned(),
    };
    let auth_token = SecretSources {
        key: "account.auth_token",
        inline: section.auth_token.as_deref(),
        file: section.auth_token_file.as_deref(),
        env: section.auth_token_env.as_deref(),
    }
    .resolve(environment)?;
    Ok(router::config::Account {
        sid,
        auth_token: auth_token.map(|token| token.expose().to_owned()),
    })
}

/// `AC` followed by 32 hexadecimal digits, the shape of a Twilio account sid.
fn is_account_sid(text: &str) -> bool {
    text.len() == 34
        && text.starts_with("AC")
        && text.bytes().skip(2).all(|byte| byte.is_ascii_hexdigit())
}

fn numbers(entries: Vec<file::Number>) -> Result<Vec<router::config::Number>, ConfigError> {
    let mut numbers: Vec<router::config::Number> = Vec::with_capacity(entries.len());
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let prefix = format!("numbers[{index}]");
        let number = required(&prefix, "number", entry.number)?;
        let number_key = format!("{prefix}.number");
        if number.is_empty() {
            return Err(invalid(number_key, Problem::Empty));
        }
        if number.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                number_key,
                Problem::Characters {
                    found: number,
                    allowed: "no spaces or control characters",
                },
            ));
        }
        if let Some(first) = seen.get(&number) {
            return Err(invalid(
                number_key,
                Problem::Duplicate {
                    found: number,
                    first: format!("numbers[{first}].number"),
                },
            ));
        }
        seen.insert(number.clone(), index);
        let voice_url = http_url(
            &format!("{prefix}.voice_url"),
            required(&prefix, "voice_url", entry.voice_url)?,
        )?;
        let voice_fallback_url = entry
            .voice_fallback_url
            .map(|url| http_url(&format!("{prefix}.voice_fallback_url"), url))
            .transpose()?;
        let status_callback = entry
            .status_callback
            .map(|url| http_url(&format!("{prefix}.status_callback"), url))
            .transpose()?;
        let voice_method = match entry.voice_method {
            Some(file::VoiceMethod::Get) => router::config::WebhookMethod::Get,
            Some(file::VoiceMethod::Post) | None => router::config::WebhookMethod::Post,
        };
        numbers.push(router::config::Number {
            number,
            voice_url,
            voice_method,
            voice_fallback_url,
            status_callback,
        });
    }
    Ok(numbers)
}

/// An absolute `http://` or `https://` URL with a host, and nothing a URL cannot contain.
fn http_url(key: &str, url: String) -> Result<String, ConfigError> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let has_host = rest.is_some_and(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        !host.is_empty() && !host.starts_with(':')
    });
    // RFC 3986 §2: spaces and control characters never appear in a URL unescaped.
    let is_clean = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if has_host && is_clean {
        Ok(url)
    } else {
        Err(invalid(key, Problem::HttpUrl { found: url }))
    }
}

fn required<T>(prefix: &str, name: &str, value: Option<T>) -> Result<T, ConfigError> {
    value.ok_or_else(|| ConfigError::Missing {
        key: format!("{prefix}.{name}"),
    })
}

/// `value` (or `default`) checked to lie in `min..=max`.
fn presence_config(section: &file::Presence) -> Result<PresenceConfig, ConfigError> {
    let registry_defaults = presence::registry::Config::default();
    let gateway_defaults = presence::gateway::GatewayConfig::default();
    // usize from a value bounded well below u32::MAX: the conversion cannot fail.
    let count = |key: &str, value: Option<u64>, default: usize, max: u64| {
        bounded(key, value, default as u64, 1, max)
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
    };
    let seconds = |key: &str, value: Option<u64>, default: Duration, max: u64| {
        bounded(key, value, default.as_secs(), 1, max).map(Duration::from_secs)
    };
    let gateway = presence::gateway::GatewayConfig {
        listen_timeout: seconds(
            "presence.listen_timeout_s",
            section.listen_timeout_s,
            gateway_defaults.listen_timeout,
            300,
        )?,
        max_message_bytes: count(
            "presence.max_message_bytes",
            section.max_message_bytes,
            gateway_defaults.max_message_bytes,
            16 * 1024 * 1024,
        )?,
        outbound_queue: count(
            "presence.outbound_queue",
            section.outbound_queue,
            gateway_defaults.outbound_queue,
            65_536,
        )?,
        ping_interval: seconds(
            "presence.ping_interval_s",
            section.ping_interval_s,
            gateway_defaults.ping_interval,
            3600,
        )?,
        dead_after: seconds(
            "presence.dead_after_s",
            section.dead_after_s,
            gateway_defaults.dead_after,
            3600,
        )?,
        max_connections_per_ip: count(
            "presence.max_connections_per_ip",
            section.max_connections_per_ip,
            gateway_defaults.max_connections_per_ip,
            1_000_000,
        )?,
    };
    if gateway.dead_after <= gateway.ping_interval {
        return Err(invalid(
            "presence.dead_after_s",
            Problem::LessThan {
                value: gateway.dead_after.as_secs(),
                other: "presence.ping_interval_s".to_owned(),
                other_value: gateway.ping_interval.as_secs(),
            },
        ));
    }
    let registry = presence::registry::Config {
        max_devices_per_identity: count(
            "presence.max_devices_per_identity",
            section.max_devices_per_identity,
            registry_defaults.max_devices_per_identity,
            10_000,
        )?,
        max_subscriptions_per_device: count(
            "presence.max_subscriptions_per_device",
            section.max_subscriptions_per_device,
            registry_defaults.max_subscriptions_per_device,
            100_000,
        )?,
    };
    Ok(PresenceConfig { registry, gateway })
}

fn bounded(
    key: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) if min > 0 => Err(invalid(key, Problem::Zero)),
        Some(value) if value < min || value > max => {
            Err(invalid(key, Problem::OutOfRange { value, min, max }))
        }
        Some(value) => Ok(value),
    }
}

fn bounded_ms(
    key: &str,
    value: Option<u64>,
    default: Duration,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    bounded(key, value, default, min, max)
}

/// Every bound above fits in `usize` on the 32- and 64-bit targets Tandem supports.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn invalid(key: impl Into<String>, problem: Problem) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem,
    }
}
