//! Configuration errors: each names the offending key by its full dotted path, so that the
//! binary can print it and exit with 64.

use std::path::PathBuf;

use super::Algorithm;

/// A configuration that cannot be used. Every variant about a key names it by its full path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("not valid TOML{}: {message}", at_line(*line))]
    Syntax {
        /// The line of the error, when known.
        line: Option<usize>,
        /// The TOML parser's description.
        message: String,
    },
    /// A key the schema does not know (a typo, or a key in the wrong section).
    #[error("unknown key \"{key}\"{}", at_line(*line))]
    UnknownKey {
        /// The full path of the key.
        key: String,
        /// The line of the key, when known.
        line: Option<usize>,
    },
    /// A value of the wrong type or shape (a string where a number belongs, an unknown variant).
    #[error("{key}: {message}{}", at_line(*line))]
    Type {
        /// The full path of the key.
        key: String,
        /// The deserializer's description.
        message: String,
        /// The line of the value, when known.
        line: Option<usize>,
    },
    /// A required key is not set.
    #[error("{key}: required but not set")]
    Missing {
        /// The full path of the key.
        key: String,
    },
    /// Two keys that exclude each other (`secret` and `secret_file`, say) are both set.
    #[error("{first} and {second} are both set; set only one")]
    Conflict {
        /// The first key, by full path.
        first: String,
        /// The second key, by full path.
        second: String,
    },
    /// A value that is well-typed but not acceptable.
    #[error("{key}: {problem}")]
    Invalid {
        /// The full path of the key.
        key: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The environment variable named by a `*_env` key is not set.
    #[error("{key}: environment variable {var} is not set")]
    EnvironmentMissing {
        /// The full path of the `*_env` key.
        key: String,
        /// The variable.
        var: String,
    },
    /// The environment variable named by a `*_env` key is not valid UTF-8.
    #[error("{key}: environment variable {var} is not valid UTF-8")]
    EnvironmentNotUnicode {
        /// The full path of the `*_env` key.
        key: String,
        /// The variable.
        var: String,
    },
    /// A file named by a key (`*_file`, `public_key_file`) could not be read.
    #[error("{key}: cannot read {}: {source}", path.display())]
    FileRead {
        /// The full path of the key.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The resolved configuration could not be written as TOML (a bug in Tandem, not in the file).
    #[error("cannot write the resolved configuration as TOML: {0}")]
    Render(#[from] toml::ser::Error),
}

/// What is wrong with a value (see [`ConfigError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A verification key that cannot be used (bad PEM, wrong curve, short secret).
    #[error("{0}")]
    Key(presence::token::KeyError),
    /// An empty string, list or path.
    #[error("must not be empty")]
    Empty,
    /// A number that must be positive is zero.
    #[error("must be greater than zero")]
    Zero,
    /// A number outside the accepted bounds.
    #[error("{value} is out of range (expected {min} to {max})")]
    OutOfRange {
        /// The value given.
        value: u64,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// A number smaller than another key's value that bounds it.
    #[error("{value} is less than {other} ({other_value})")]
    LessThan {
        /// The value given.
        value: u64,
        /// The full path of the bounding key.
        other: String,
        /// Its value.
        other_value: u64,
    },
    /// A `sip.listen` entry without a `transport:` prefix.
    #[error("\"{found}\" has no transport (expected udp:ADDRESS:PORT or tcp:ADDRESS:PORT)")]
    MissingTransport {
        /// The entry.
        found: String,
    },
    /// A `sip.listen` transport other than udp or tcp.
    #[error("unknown transport \"{found}\" (expected udp or tcp)")]
    UnknownTransport {
        /// The transport as written.
        found: String,
    },
    /// Not an `IP:port` socket address.
    #[error("\"{found}\" is not an IP address and port (like 0.0.0.0:5060 or [::]:5060)")]
    SocketAddress {
        /// The value as written.
        found: String,
    },
    /// Not an IP address.
    #[error("\"{found}\" is not an IP address")]
    IpAddress {
        /// The value as written.
        found: String,
    },
    /// Not a network in CIDR notation nor a single address.
    #[error("\"{found}\" is not an IP network (like 198.51.100.0/24) or address")]
    Network {
        /// The value as written.
        found: String,
    },
    /// Not an absolute `http` or `https` URL.
    #[error("\"{found}\" is not an http:// or https:// URL")]
    HttpUrl {
        /// The value as written.
        found: String,
    },
    /// Not a `sip:` or `sips:` URI.
    #[error("\"{found}\" is not a sip: or sips: URI ({reason})")]
    SipUri {
        /// The value as written.
        found: String,
        /// Why.
        reason: &'static str,
    },
    /// A value that must be unique appears twice.
    #[error("\"{found}\" is already used by {first}")]
    Duplicate {
        /// The repeated value.
        found: String,
        /// The full path of the key that holds it first.
        first: String,
    },
    /// Characters that cannot appear in this value.
    #[error("\"{found}\" contains characters not allowed here (allowed: {allowed})")]
    Characters {
        /// The value as written.
        found: String,
        /// A description of the allowed characters.
        allowed: &'static str,
    },
    /// A digest algorithm Tandem does not offer.
    #[error("unknown digest algorithm \"{found}\" (expected SHA-256 or MD5)")]
    DigestAlgorithm {
        /// The value as written.
        found: String,
    },
    /// Not `AC` followed by 32 hexadecimal digits.
    #[error("\"{found}\" is not an account sid (AC followed by 32 hexadecimal digits)")]
    AccountSid {
        /// The value as written.
        found: String,
    },
    /// Not `START-END`.
    #[error("\"{found}\" is not a port range like 20000-29999")]
    PortRange {
        /// The value as written.
        found: String,
    },
    /// The range is empty, reversed or starts at port 0.
    #[error("{first}-{last}: the first port must be above 0 and below the last")]
    PortRangeOrder {
        /// The first port.
        first: u16,
        /// The last port.
        last: u16,
    },
    /// The range starts on an odd port.
    #[error("the first port ({first}) must be even: RTP takes even ports, RTCP the odd port above (RFC 3550 §11)")]
    OddFirstRtpPort {
        /// The first port.
        first: u16,
    },
    /// An HS256 secret shorter than the hash output.
    #[error("an HS256 secret needs at least 32 bytes, this one has {length} (RFC 7518 §3.2)")]
    ShortSecret {
        /// The secret's length in bytes.
        length: usize,
    },
    /// A key that the configured algorithm does not use.
    #[error("is not used with {algorithm} keys ({hint})")]
    NotForAlgorithm {
        /// The key's algorithm.
        algorithm: Algorithm,
        /// What to set instead.
        hint: &'static str,
    },
    /// A secret whose value is the placeholder `check-config` prints.
    #[error("is \"<redacted>\", the placeholder check-config prints; put the real secret here")]
    RedactedPlaceholder,
    /// An environment variable name that cannot be set (empty, or containing `=` or NUL).
    #[error("{found:?} is not a usable environment variable name")]
    EnvironmentVariableName {
        /// The name as written.
        found: String,
    },
}

/// ` (line N)`, or nothing when the line is unknown.
fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" (line {line})"))
        .unwrap_or_default()
}
