//! Unit tests of loading, resolution and rendering.

use std::collections::HashMap;
use std::env::VarError;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use sip::config::ListenTransport;

use super::*;

fn parse_with(text: &str, variables: &[(&str, &str)]) -> Result<AppConfig, ConfigError> {
    let variables: HashMap<String, String> = variables
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let environment = move |name: &str| variables.get(name).cloned().ok_or(VarError::NotPresent);
    parse_with_environment(text, &environment)
}

fn parse_ok(text: &str) -> AppConfig {
    match parse_with(text, &[]) {
        Ok(config) => config,
        Err(error) => panic!("{text}\nfailed: {error}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    match parse_with(text, &[]) {
        Ok(_) => panic!("{text}\nwas accepted"),
        Err(error) => error,
    }
}

/// The key an error names, for the variants that name one.
fn key_of(error: &ConfigError) -> &str {
    match error {
        ConfigError::UnknownKey { key, .. }
        | ConfigError::Type { key, .. }
        | ConfigError::Missing { key }
        | ConfigError::Invalid { key, .. }
        | ConfigError::EnvironmentMissing { key, .. }
        | ConfigError::EnvironmentNotUnicode { key, .. }
        | ConfigError::FileRead { key, .. } => key,
        ConfigError::Conflict { first, .. } => first,
        other => panic!("{other} names no key"),
    }
}

fn problem_of(error: &ConfigError) -> &Problem {
    match error {
        ConfigError::Invalid { problem, .. } => problem,
        other => panic!("{other} is not an invalid value"),
    }
}

const HS256_SECRET: &str = "0123456789abcdef0123456789abcdef-hs256";

#[test]
fn embedded_defaults_match_the_product_contract() {
    let config = defaults();
    assert_eq!(config.source, None);
    assert_eq!(config.data_dir, PathBuf::from("./tandem-data"));
    let listen: Vec<(ListenTransport, SocketAddr)> = config
        .sip
        .listen
        .iter()
        .map(|listen| (listen.transport, listen.addr))
        .collect();
    let any: SocketAddr = "0.0.0.0:5060".parse().unwrap();
    assert_eq!(
        listen,
        vec![(ListenTransport::Udp, any), (ListenTransport::Tcp, any)]
    );
    assert_eq!(
        config.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.http.api_key, None);
    assert_eq!(config.media.rtp_ports.first(), 20000);
    assert_eq!(config.media.rtp_ports.last(), 29999);
    assert_eq!(config.media.cache_max_bytes, 1024 * 1024 * 1024);
    assert_eq!(config.media.cache_dir, PathBuf::from("./tandem-data/media"));
    assert!(config.auth_keys.is_empty());
    assert!(config.router.numbers.is_empty());
    assert_eq!(config.drain_grace, Duration::from_secs(30));
    assert_eq!(config.log.format, LogFormat::Human);
    // The empty file and the embedded defaults are the same thing.
    assert_eq!(parse_ok("").to_toml().unwrap(), config.to_toml().unwrap());
}

#[test]
fn without_trunks_only_loopback_sources_are_trusted() {
    let config = defaults();
    assert_eq!(config.sip.trunks.len(), 1);
    assert_eq!(config.sip.trunks[0].name, DEFAULT_TRUNK_NAME);
    for trusted in ["127.0.0.1", "127.1.2.3", "::1"] {
        let source: IpAddr = trusted.parse().unwrap();
        assert!(config.sip.trunk_for(source).is_some(), "{trusted}");
    }
    for untrusted in ["10.0.0.1", "198.51.100.7", "::2", "fe80::1"] {
        let source: IpAddr = untrusted.parse().unwrap();
        assert!(config.sip.trunk_for(source).is_none(), "{untrusted}");
    }
}

#[test]
fn explicit_empty_trunk_list_trusts_nobody() {
    let config = parse_ok("trunks = []\n");
    assert!(config.sip.trunks.is_empty());
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(config.sip.trunk_for(loopback).is_none());
}

#[test]
fn full_file_reaches_each_subsystem() {
    let text = format!(
        r#"
data_dir = "/var/lib/tandem"

[sip]
listen = ["udp:192.0.2.1:5070", "tcp:[::]:5080"]
advertised_address = "203.0.113.7"
t1_ms = 250
t2_ms = 2000
t4_ms = 4000
max_message_size = 32768
tcp_idle_timeout_s = 120
max_connections_per_ip = 8
realm = "example.test"
digest_algorithms = ["MD5"]
min_expires_s = 120
max_expires_s = 1800

[http]
listen = "0.0.0.0:8443"
api_key_env = "TEST_API_KEY"

[[auth.keys]]
id = "SKdev"
algorithm = "HS256"
secret = "{HS256_SECRET}"

[media]
cache_max_bytes = 1000000
rtp_ports = "30000-30099"

[account]
sid = "ACabcdef0123456789abcdef0123456789"
auth_token = "webhook-token"

[[numbers]]
number = "+15550100"
voice_url = "http://127.0.0.1:9000/voice"
voice_method = "GET"
voice_fallback_url = "https://fallback.example/voice"
status_callback = "http://127.0.0.1:9000/status"

[[numbers]]
number = "*"
voice_url = "https://any.example/voice"

[[trunks]]
name = "carrier"
allow = ["198.51.100.7/24", "192.0.2.9", "2001:db8::1"]
outbound_uri = "sip:gateway@198.51.100.10:5060"

[[sip_users]]
username = "1001"
password = "phone-password"

[log]
format = "json"

[drain]
grace_s = 5
"#
    );
    let config = parse_with(&text, &[("TEST_API_KEY", "api-key-from-env")]).unwrap();

    assert_eq!(config.data_dir, PathBuf::from("/var/lib/tandem"));
    assert_eq!(
        config.media.cache_dir,
        PathBuf::from("/var/lib/tandem/media")
    );

    let sip = &config.sip;
    assert_eq!(sip.listen.len(), 2);
    assert_eq!(sip.listen[0].transport, ListenTransport::Udp);
    assert_eq!(
        sip.listen[0].addr,
        "192.0.2.1:5070".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(sip.listen[1].transport, ListenTransport::Tcp);
    assert_eq!(
        sip.listen[1].addr,
        "[::]:5080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(sip.advertised_address, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(sip.timers.t1, Duration::from_millis(250));
    assert_eq!(sip.timers.t2, Duration::from_millis(2000));
    assert_eq!(sip.timers.t4, Duration::from_millis(4000));
    assert_eq!(sip.max_message_size, 32768);
    assert_eq!(sip.tcp_idle_timeout, Duration::from_secs(120));
    assert_eq!(sip.max_connections_per_ip, 8);
    assert_eq!(sip.realm, "example.test");
    assert_eq!(sip.digest_algorithms, [sip::auth::Algorithm::Md5]);
    assert_eq!(sip.registration.min_expires, Duration::from_secs(120));
    assert_eq!(sip.registration.max_expires, Duration::from_secs(1800));
    // The preferred 3600 s is clamped into the configured bounds.
    assert_eq!(sip.registration.default_expires, Duration::from_secs(1800));

    assert_eq!(
        sip.trunks.len(),
        1,
        "configured trunks replace the local one"
    );
    let trunk = &sip.trunks[0];
    assert_eq!(trunk.name, "carrier");
    let allow: Vec<String> = trunk.allow.iter().map(ToString::to_string).collect();
    assert_eq!(
        allow,
        ["198.51.100.0/24", "192.0.2.9/32", "2001:db8::1/128"]
    );
    assert_eq!(
        trunk
            .outbound_uri
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("sip:gateway@198.51.100.10:5060")
    );
    assert!(sip.trunk_for("198.51.100.200".parse().unwrap()).is_some());
    assert!(sip.trunk_for("192.0.2.10".parse().unwrap()).is_none());

    assert_eq!(sip.users.len(), 1);
    assert_eq!(sip.users[0].username, "1001");
    assert_eq!(sip.users[0].password, "phone-password");

    assert_eq!(
        config.http.listen,
        "0.0.0.0:8443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.http.api_key.as_ref().map(Secret::expose),
        Some("api-key-from-env")
    );

    assert_eq!(config.auth_keys.len(), 1);
    assert_eq!(config.auth_keys[0].id, "SKdev");
    assert_eq!(config.auth_keys[0].algorithm, Algorithm::Hs256);
    assert!(matches!(
        &config.auth_keys[0].material,
        KeyMaterial::Secret(secret) if secret.expose() == HS256_SECRET
    ));

    assert_eq!(config.media.cache_max_bytes, 1_000_000);
    assert_eq!(config.media.rtp_ports.to_string(), "30000-30099");

    let router = &config.router;
    assert_eq!(router.account.sid, "ACabcdef0123456789abcdef0123456789");
    assert_eq!(router.account.auth_token.as_deref(), Some("webhook-token"));
    assert_eq!(router.numbers.len(), 2);
    let first = &router.numbers[0];
    assert_eq!(first.number, "+15550100");
    assert_eq!(first.voice_url, "http://127.0.0.1:9000/voice");
    assert_eq!(first.voice_method, router::config::WebhookMethod::Get);
    assert_eq!(
        first.voice_fallback_url.as_deref(),
        Some("https://fallback.example/voice")
    );
    assert_eq!(
        first.status_callback.as_deref(),
        Some("http://127.0.0.1:9000/status")
    );
    let wildcard = &router.numbers[1];
    assert_eq!(wildcard.voice_method, router::config::WebhookMethod::Post);
    assert_eq!(wildcard.voice_fallback_url, None);
    let directory = router::Directory::new(router);
    assert_eq!(
        directory.resolve("+15550100"),
        router::Resolution::Application(first)
    );
    assert_eq!(
        directory.resolve("+15550111"),
        router::Resolution::Application(wildcard)
    );

    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.drain_grace, Duration::from_secs(5));

    // Nothing secret reaches Debug output or the rendered TOML.
    let debug = format!("{config:?}");
    let rendered = config.to_toml().unwrap();
    for secret in [
        "api-key-from-env",
        HS256_SECRET,
        "webhook-token",
        "phone-password",
    ] {
        assert!(!debug.contains(secret), "Debug shows {secret}");
        assert!(!rendered.contains(secret), "TOML shows {secret}");
    }
    assert_eq!(rendered.matches(REDACTED).count(), 4, "{rendered}");
}

#[test]
fn rendering_is_stable_and_reads_back_the_same() {
    let text = r#"
data_dir = "data"
[sip]
listen = ["tcp:[::1]:5062"]
advertised_address = "2001:db8::7"
t1_ms = 100
[media]
cache_dir = "elsewhere"
rtp_ports = "40000-40001"
[[numbers]]
number = "100"
voice_url = "http://h/v"
[[trunks]]
name = "a"
allow = ["10.0.0.0/8"]
[[trunks]]
name = "b"
allow = ["::/0"]
outbound_uri = "sips:gw.example.com"
"#;
    let rendered = parse_ok(text).to_toml().unwrap();
    let reread = parse_ok(&rendered).to_toml().unwrap();
    assert_eq!(rendered, reread);
    assert!(rendered.contains("cache_dir = \"elsewhere\""), "{rendered}");
    assert!(rendered.contains("voice_method = \"POST\""), "{rendered}");
    assert!(
        rendered.contains("listen = [\"tcp:[::1]:5062\"]"),
        "{rendered}"
    );
}

#[test]
fn rendered_secrets_cannot_be_used_as_configuration() {
    let text = "[http]\napi_key = \"real-key\"\n";
    let rendered = parse_ok(text).to_toml().unwrap();
    assert!(!rendered.contains("real-key"));
    let error = parse_err(&rendered);
    assert_eq!(key_of(&error), "http.api_key");
    assert_eq!(problem_of(&error), &Problem::RedactedPlaceholder);
}

#[test]
fn serde_level_errors_name_the_full_path_and_line() {
    let error = parse_err("[sip]\nt1_ms = 500\nlisen = []\n");
    assert!(matches!(&error, ConfigError::UnknownKey { key, line: Some(3) } if key == "sip.lisen"));
    assert_eq!(error.to_string(), "unknown key \"sip.lisen\" (line 3)");

    let error = parse_err("colour = \"blue\"\n");
    assert!(matches!(&error, ConfigError::UnknownKey { key, .. } if key == "colour"));

    let error =
        parse_err("[[numbers]]\nnumber = \"1\"\nvoice_url = \"http://h/\"\nvoice_urll = \"x\"\n");
    assert!(
        matches!(&error, ConfigError::UnknownKey { key, .. } if key == "numbers[0].voice_urll")
    );

    let error = parse_err("[sip]\nt1_ms = \"fast\"\n");
    assert!(matches!(&error, ConfigError::Type { key, line: Some(2), .. } if key == "sip.t1_ms"));

    let error = parse_err("[sip]\nlisten = [\"udp:0.0.0.0:5060\", 7]\n");
    assert_eq!(key_of(&error), "sip.listen[1]");

    let error = parse_err("[sip]\nt1_ms = -5\n");
    assert_eq!(key_of(&error), "sip.t1_ms");

    let error = parse_err("[[auth.keys]]\nid = \"k\"\nalgorithm = \"RS256\"\n");
    assert_eq!(key_of(&error), "auth.keys[0].algorithm");

    let error = parse_err("[log]\nformat = \"xml\"\n");
    assert_eq!(key_of(&error), "log.format");
}

#[test]
fn syntax_errors_give_a_line_on_one_line() {
    let error = parse_err("data_dir = \"x\"\n[sip\n");
    assert!(
        matches!(&error, ConfigError::Syntax { line: Some(2), .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains('\n'), "{error}");
}

#[test]
fn listen_entries_are_checked() {
    let cases: &[(&str, &str)] = &[
        (
            "sctp:0.0.0.0:5060",
            "unknown transport \"sctp\" (expected udp or tcp)",
        ),
        ("0.0.0.0:5060", "has no transport"),
        ("[::]:5060", "has no transport"),
        ("udp", "has no transport"),
        ("udp:0.0.0.0", "is not an IP address and port"),
        ("tcp:localhost:5060", "is not an IP address and port"),
        ("udp:0.0.0.0:70000", "is not an IP address and port"),
    ];
    for (entry, expected) in cases {
        let text = format!("[sip]\nlisten = [\"udp:0.0.0.0:5060\", \"{entry}\"]\n");
        let error = parse_err(&text);
        assert_eq!(key_of(&error), "sip.listen[1]", "{entry}");
        assert!(error.to_string().contains(expected), "{entry}: {error}");
    }
    let error = parse_err("[sip]\nlisten = [\"sctp:0.0.0.0:5060\"]\n");
    assert_eq!(
        error.to_string(),
        "sip.listen[0]: unknown transport \"sctp\" (expected udp or tcp)"
    );
    let error = parse_err("[sip]\nlisten = []\n");
    assert_eq!(key_of(&error), "sip.listen");
    assert_eq!(problem_of(&error), &Problem::Empty);
    let error = parse_err("[sip]\nlisten = [\"udp:0.0.0.0:5060\", \"UDP:0.0.0.0:5060\"]\n");
    assert_eq!(key_of(&error), "sip.listen[1]");
    assert!(
        matches!(problem_of(&error), Problem::Duplicate { first, .. } if first == "sip.listen[0]")
    );
}

#[test]
fn numeric_bounds_are_enforced() {
    let cases: &[(&str, &str)] = &[
        ("[sip]\nt1_ms = 0\n", "sip.t1_ms"),
        ("[sip]\nt1_ms = 600000\n", "sip.t1_ms"),
        ("[sip]\nt4_ms = 0\n", "sip.t4_ms"),
        ("[sip]\nt1_ms = 3000\nt2_ms = 2000\n", "sip.t2_ms"),
        ("[sip]\nt1_ms = 5000\n", "sip.t2_ms"),
        ("[sip]\nmax_message_size = 100\n", "sip.max_message_size"),
        (
            "[sip]\nmax_message_size = 1000000000\n",
            "sip.max_message_size",
        ),
        ("[sip]\ntcp_idle_timeout_s = 0\n", "sip.tcp_idle_timeout_s"),
        (
            "[sip]\nmax_connections_per_ip = 0\n",
            "sip.max_connections_per_ip",
        ),
        ("[sip]\nmin_expires_s = 0\n", "sip.min_expires_s"),
        (
            "[sip]\nmin_expires_s = 600\nmax_expires_s = 300\n",
            "sip.max_expires_s",
        ),
        ("[media]\ncache_max_bytes = 0\n", "media.cache_max_bytes"),
        ("[drain]\ngrace_s = 99999\n", "drain.grace_s"),
    ];
    for (text, key) in cases {
        let error = parse_err(text);
        assert_eq!(key_of(&error), *key, "{text}");
    }
    let error = parse_err("[sip]\nt1_ms = 3000\nt2_ms = 2000\n");
    assert_eq!(
        error.to_string(),
        "sip.t2_ms: 2000 is less than sip.t1_ms (3000)"
    );
    // A zero drain grace is allowed: stop at once.
    assert_eq!(
        parse_ok("[drain]\ngrace_s = 0\n").drain_grace,
        Duration::ZERO
    );
}

#[test]
fn default_registration_interval_respects_the_bounds() {
    let config = parse_ok("[sip]\nmin_expires_s = 7200\nmax_expires_s = 86400\n");
    assert_eq!(
        config.sip.registration.default_expires,
        Duration::from_secs(7200)
    );
    let config = parse_ok("");
    assert_eq!(
        config.sip.registration.default_expires,
        Duration::from_secs(3600)
    );
}

#[test]
fn rtp_port_ranges_are_checked() {
    for (range, accepted) in [
        ("20000-29999", true),
        ("10000-10001", true),
        ("20001-29999", false),
        ("30000-20000", false),
        ("20000-20000", false),
        ("0-100", false),
        ("20000", false),
        ("20000-", false),
        ("a-b", false),
        ("20000-70000", false),
        (" 20000-29999", false),
    ] {
        let text = format!("[media]\nrtp_ports = \"{range}\"\n");
        match parse_with(&text, &[]) {
            Ok(config) => {
                assert!(accepted, "{range} was accepted");
                assert_eq!(config.media.rtp_ports.to_string(), range);
            }
            Err(error) => {
                assert!(!accepted, "{range} was refused: {error}");
                assert_eq!(key_of(&error), "media.rtp_ports");
            }
        }
    }
    let error = parse_err("[media]\nrtp_ports = \"20001-29999\"\n");
    assert_eq!(
        problem_of(&error),
        &Problem::OddFirstRtpPort { first: 20001 }
    );
}

#[test]
fn account_sid_must_have_twilio_shape() {
    for sid in [
        "AC0000000000000000000000000000000",
        "AC000000000000000000000000000000000",
        "SK00000000000000000000000000000000",
        "AC0000000000000000000000000000000g",
        "",
    ] {
        let error = parse_err(&format!("[account]\nsid = \"{sid}\"\n"));
        assert_eq!(key_of(&error), "account.sid", "{sid}");
    }
    let config = parse_ok("[account]\nsid = \"ACABCDEF0123456789abcdef0123456789\"\n");
    assert_eq!(
        config.router.account.sid,
        "ACABCDEF0123456789abcdef0123456789"
    );
    assert_eq!(config.router.account.auth_token, None);
}

#[test]
fn webhook_urls_must_be_http() {
    for (url, accepted) in [
        ("http://127.0.0.1:9000/voice", true),
        ("https://example.com", true),
        ("HTTPS://Example.com/Path?q=1#f", true),
        ("http://user:pw@example.com/", true),
        ("ftp://example.com/", false),
        ("example.com/voice", false),
        ("http://", false),
        ("http:///path", false),
        ("http://:80/", false),
        ("http://exa mple.com/", false),
        ("", false),
    ] {
        let text = format!("[[numbers]]\nnumber = \"1\"\nvoice_url = \"{url}\"\n");
        match parse_with(&text, &[]) {
            Ok(_) => assert!(accepted, "{url} was accepted"),
            Err(error) => {
                assert!(!accepted, "{url} was refused: {error}");
                assert_eq!(key_of(&error), "numbers[0].voice_url");
            }
        }
    }
    for key in ["voice_fallback_url", "status_callback"] {
        let text = format!(
            "[[numbers]]\nnumber = \"1\"\nvoice_url = \"http://h/\"\n{key} = \"mailto:a@b\"\n"
        );
        assert_eq!(key_of(&parse_err(&text)), format!("numbers[0].{key}"));
    }
}

#[test]
fn numbers_are_required_and_unique() {
    let error = parse_err("[[numbers]]\nvoice_url = \"http://h/\"\n");
    assert!(matches!(&error, ConfigError::Missing { key } if key == "numbers[0].number"));
    let error = parse_err("[[numbers]]\nnumber = \"1\"\n");
    assert_eq!(
        error.to_string(),
        "numbers[0].voice_url: required but not set"
    );
    let error = parse_err(
        "[[numbers]]\nnumber = \"1\"\nvoice_url = \"http://h/\"\n\
         [[numbers]]\nnumber = \"2\"\nvoice_url = \"http://h/\"\n\
         [[numbers]]\nnumber = \"1\"\nvoice_url = \"http://h/\"\n",
    );
    assert_eq!(key_of(&error), "numbers[2].number");
    assert!(
        matches!(problem_of(&error), Problem::Duplicate { first, .. } if first == "numbers[0].number")
    );
    let error = parse_err("[[numbers]]\nnumber = \"+1 555\"\nvoice_url = \"http://h/\"\n");
    assert_eq!(key_of(&error), "numbers[0].number");
}

#[test]
fn trunks_are_checked() {
    let error = parse_err("[[trunks]]\nname = \"a\"\nallow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n");
    assert_eq!(key_of(&error), "trunks[0].allow[1]");
    assert!(matches!(problem_of(&error), Problem::Network { .. }));
    for bad in ["not-an-ip", "10.0.0/8", "::1/129", ""] {
        let error = parse_err(&format!("[[trunks]]\nname = \"a\"\nallow = [\"{bad}\"]\n"));
        assert_eq!(key_of(&error), "trunks[0].allow[0]", "{bad}");
    }
    let error = parse_err("[[trunks]]\nname = \"a\"\nallow = []\n");
    assert_eq!(key_of(&error), "trunks[0].allow");
    let error = parse_err("[[trunks]]\nname = \"a\"\n");
    assert!(matches!(&error, ConfigError::Missing { key } if key == "trunks[0].allow"));
    let error = parse_err("[[trunks]]\nallow = [\"10.0.0.1\"]\n");
    assert!(matches!(&error, ConfigError::Missing { key } if key == "trunks[0].name"));
    let error = parse_err(
        "[[trunks]]\nname = \"a\"\nallow = [\"10.0.0.1\"]\n[[trunks]]\nname = \"a\"\nallow = [\"10.0.0.2\"]\n",
    );
    assert_eq!(key_of(&error), "trunks[1].name");
    for bad in ["tel:+15550100", "gateway.example.com", "sip:", "http://gw/"] {
        let error = parse_err(&format!(
            "[[trunks]]\nname = \"a\"\nallow = [\"10.0.0.1\"]\noutbound_uri = \"{bad}\"\n"
        ));
        assert_eq!(key_of(&error), "trunks[0].outbound_uri", "{bad}");
    }
}

#[test]
fn sip_users_are_checked() {
    let error = parse_err("[[sip_users]]\nusername = \"1001\"\n");
    assert!(matches!(&error, ConfigError::Missing { key } if key == "sip_users[0].password"));
    let error = parse_err("[[sip_users]]\npassword = \"p\"\n");
    assert!(matches!(&error, ConfigError::Missing { key } if key == "sip_users[0].username"));
    for bad in ["", "al ice", "a\\\"b", "a@b", "a:b", "caf%C3%A9"] {
        let error = parse_err(&format!(
            "[[sip_users]]\nusername = \"{bad}\"\npassword = \"p\"\n"
        ));
        assert_eq!(key_of(&error), "sip_users[0].username", "{bad:?}");
    }
    let error = parse_err(
        "[[sip_users]]\nusername = \"1001\"\npassword = \"p\"\n\
         [[sip_users]]\nusername = \"1001\"\npassword = \"q\"\n",
    );
    assert_eq!(key_of(&error), "sip_users[1].username");
    let error =
        parse_err("[[sip_users]]\nusername = \"1001\"\npassword = \"p\"\npassword_env = \"X\"\n");
    assert!(matches!(
        &error,
        ConfigError::Conflict { first, second }
            if first == "sip_users[0].password" && second == "sip_users[0].password_env"
    ));
}

#[test]
fn realm_and_advertised_address_are_checked() {
    assert_eq!(key_of(&parse_err("[sip]\nrealm = \"\"\n")), "sip.realm");
    assert_eq!(
        key_of(&parse_err("[sip]\nrealm = \"a\\\"b\"\n")),
        "sip.realm"
    );
    let error = parse_err("[sip]\nadvertised_address = \"tandem.example.com\"\n");
    assert_eq!(key_of(&error), "sip.advertised_address");
    assert_eq!(
        key_of(&parse_err("[http]\nlisten = \"localhost:8080\"\n")),
        "http.listen"
    );
}

#[test]
fn hs256_keys_need_a_long_enough_secret() {
    let error = parse_err("[[auth.keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"short\"\n");
    assert_eq!(key_of(&error), "auth.keys[0].secret");
    assert_eq!(problem_of(&error), &Problem::ShortSecret { length: 5 });
    let error = parse_err("[[auth.keys]]\nid = \"k\"\nalgorithm = \"HS256\"\n");
    assert!(matches!(&error, ConfigError::Missing { key } if key == "auth.keys[0].secret"));
    let error = parse_err(&format!(
        "[[auth.keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"{HS256_SECRET}\"\npublic_key_file = \"k.pem\"\n"
    ));
    assert_eq!(key_of(&error), "auth.keys[0].public_key_file");
    let error = parse_err(&format!(
        "[[auth.keys]]\nalgorithm = \"HS256\"\nsecret = \"{HS256_SECRET}\"\n"
    ));
    assert!(matches!(&error, ConfigError::Missing { key } if key == "auth.keys[0].id"));
    let error = parse_err(&format!(
        "[[auth.keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"{HS256_SECRET}\"\n\
         [[auth.keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"{HS256_SECRET}\"\n"
    ));
    assert_eq!(key_of(&error), "auth.keys[1].id");
}

#[test]
fn public_key_algorithms_read_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("key.pem");
    let pem = include_str!("../../presence/tests/data/eddsa_public.pem");
    std::fs::write(&pem_path, pem).unwrap();
    let text = format!(
        "[[auth.keys]]\nid = \"ed\"\nalgorithm = \"EdDSA\"\npublic_key_file = {:?}\n",
        pem_path.display().to_string()
    );
    let config = parse_ok(&text);
    assert_eq!(config.auth_keys[0].algorithm, Algorithm::EdDsa);
    assert!(matches!(
        &config.auth_keys[0].material,
        KeyMaterial::PublicKey { path, pem: read } if *path == pem_path && read == pem
    ));
    let rendered = config.to_toml().unwrap();
    assert!(rendered.contains("public_key_file"), "{rendered}");
    assert!(rendered.contains("algorithm = \"EdDSA\""), "{rendered}");

    // A file that is not a usable key is refused at load time, naming the key.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(
        &bogus,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let error = parse_err(&format!(
        "[[auth.keys]]\nid = \"ed\"\nalgorithm = \"EdDSA\"\npublic_key_file = {:?}\n",
        bogus.display().to_string()
    ));
    assert_eq!(key_of(&error), "auth.keys[0]");

    let error = parse_err("[[auth.keys]]\nid = \"es\"\nalgorithm = \"ES256\"\n");
    assert!(
        matches!(&error, ConfigError::Missing { key } if key == "auth.keys[0].public_key_file")
    );
    let error = parse_err(
        "[[auth.keys]]\nid = \"es\"\nalgorithm = \"ES256\"\nsecret_env = \"X\"\npublic_key_file = \"k.pem\"\n",
    );
    assert_eq!(key_of(&error), "auth.keys[0].secret_env");
    let missing = dir.path().join("absent.pem");
    let error = parse_err(&format!(
        "[[auth.keys]]\nid = \"es\"\nalgorithm = \"ES256\"\npublic_key_file = {:?}\n",
        missing.display().to_string()
    ));
    assert!(
        matches!(&error, ConfigError::FileRead { key, .. } if key == "auth.keys[0].public_key_file")
    );
}

#[test]
fn secrets_come_from_files_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "token-from-file\n").unwrap();
    let text = format!(
        "[account]\nauth_token_file = {:?}\n[[sip_users]]\nusername = \"1001\"\npassword_env = \"PHONE_PASSWORD\"\n",
        token_path.display().to_string()
    );
    let config = parse_with(&text, &[("PHONE_PASSWORD", "pw-from-env")]).unwrap();
    assert_eq!(
        config.router.account.auth_token.as_deref(),
        Some("token-from-file")
    );
    assert_eq!(config.sip.users[0].password, "pw-from-env");

    let error = parse_with(&text, &[]).unwrap_err();
    assert!(matches!(
        &error,
        ConfigError::EnvironmentMissing { key, var }
            if key == "sip_users[0].password_env" && var == "PHONE_PASSWORD"
    ));
}

#[test]
fn empty_paths_are_refused() {
    assert_eq!(key_of(&parse_err("data_dir = \"\"\n")), "data_dir");
    assert_eq!(
        key_of(&parse_err("[media]\ncache_dir = \"\"\n")),
        "media.cache_dir"
    );
}

#[test]
fn load_reads_files_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.toml");
    std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
    let config = load(Some(&path)).unwrap();
    assert_eq!(config.source.as_deref(), Some(path.as_path()));
    assert_eq!(config.http.listen.port(), 9999);

    let absent = dir.path().join("absent.toml");
    let error = load(Some(&absent)).unwrap_err();
    assert!(matches!(&error, ConfigError::Read { path, .. } if *path == absent));
}

#[test]
fn digest_algorithms_are_checked() {
    use sip::auth::Algorithm as Digest;
    assert_eq!(
        defaults().sip.digest_algorithms,
        sip::Config::default().digest_algorithms
    );
    let config = parse_ok("[sip]\ndigest_algorithms = [\"md5\", \"SHA-256\"]\n");
    assert_eq!(config.sip.digest_algorithms, [Digest::Md5, Digest::Sha256]);
    let rendered = config.to_toml().unwrap();
    assert!(
        rendered.contains("digest_algorithms = [\"MD5\", \"SHA-256\"]"),
        "{rendered}"
    );

    let error = parse_err("[sip]\ndigest_algorithms = [\"MD5\", \"SHA-512\"]\n");
    assert_eq!(key_of(&error), "sip.digest_algorithms[1]");
    assert!(matches!(problem_of(&error), Problem::DigestAlgorithm { found } if found == "SHA-512"));
    let error = parse_err("[sip]\ndigest_algorithms = [\"MD5\", \"md5\"]\n");
    assert_eq!(key_of(&error), "sip.digest_algorithms[1]");
    let error = parse_err("[sip]\ndigest_algorithms = []\n");
    assert_eq!(key_of(&error), "sip.digest_algorithms");
}

#[test]
fn presence_limits_reach_the_gateway_and_registry() {
    let config = parse_ok(
        "[presence]\nmax_devices_per_identity = 3\nmax_connections_per_ip = 500\nlisten_timeout_s = 5\nmax_message_bytes = 4096\nping_interval_s = 5\ndead_after_s = 12\n",
    );
    assert_eq!(config.presence.registry.max_devices_per_identity, 3);
    assert_eq!(config.presence.gateway.max_connections_per_ip, 500);
    assert_eq!(
        config.presence.gateway.listen_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(config.presence.gateway.max_message_bytes, 4096);
    assert_eq!(config.presence.gateway.dead_after, Duration::from_secs(12));
    // Defaults are the gateway's own.
    assert_eq!(
        parse_ok("").presence.gateway,
        presence::gateway::GatewayConfig::default()
    );

    let error = parse_err("[presence]\nping_interval_s = 30\ndead_after_s = 30\n");
    assert_eq!(key_of(&error), "presence.dead_after_s");
    let error = parse_err("[presence]\nmax_devices_per_identity = 0\n");
    assert_eq!(key_of(&error), "presence.max_devices_per_identity");
    let error = parse_err("[presence]\nlisten_timeout = 5\n");
    assert!(
        error.to_string().contains("presence.listen_timeout"),
        "{error}"
    );
}

#[test]
fn the_per_source_rate_limit_defaults_on_and_zero_turns_it_off() {
    assert_eq!(
        defaults().sip.rate_limit_per_source,
        Some(sip::config::RATE_LIMIT_PER_SOURCE_DEFAULT)
    );
    let config = parse_ok("[sip]\nrate_limit_per_source = 0\n");
    assert_eq!(config.sip.rate_limit_per_source, None);
    let config = parse_ok("[sip]\nrate_limit_per_source = 200\n");
    assert_eq!(config.sip.rate_limit_per_source, Some(200));
    let error = parse_err("[sip]\nrate_limit_per_source = 2000000\n");
    assert_eq!(key_of(&error), "sip.rate_limit_per_source");
}
