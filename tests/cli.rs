//! The `tandem` binary's command line, run as a process: `check-config` output and exit codes,
//! and the exit code 64 with a message naming the key for every kind of bad configuration.

// Test helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXIT_USAGE: i32 = 64;

const INLINE_API_KEY: &str = "inline-api-key-7f3a";
const FILE_HS256_SECRET: &str = "secret-from-a-file-0123456789abcdef-9c1d";
const ENV_AUTH_TOKEN: &str = "auth-token-from-env-55e2";
const INLINE_PASSWORD: &str = "inline-phone-password-a8b0";
const ENV_PASSWORD: &str = "env-phone-password-d41c";

/// `tandem` with a clean environment as far as Tandem is concerned.
fn tandem() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.env_remove("TANDEM_CONFIG").env_remove("RUST_LOG");
    command
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_config(path: &Path) -> Output {
    tandem().arg("check-config").arg(path).output().unwrap()
}

/// Runs check-config on `content` and expects exit 64 with every one of `expected` in stderr.
fn expect_rejected(content: &str, expected: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "tandem.toml", content);
    let output = check_config(&path);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_USAGE), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "stdout: {}", text(&output.stdout));
    for needle in expected {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    stderr
}

#[test]
fn check_config_prints_a_full_file_resolved_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = write(
        dir.path(),
        "hs256.secret",
        &format!("{FILE_HS256_SECRET}\n"),
    );
    let config = format!(
        r#"
data_dir = "/var/lib/tandem-test"

[sip]
listen = ["udp:0.0.0.0:5070", "tcp:[::]:5071"]
advertised_address = "203.0.113.7"
t1_ms = 400
t2_ms = 3000
t4_ms = 4500
max_message_size = 20000
tcp_idle_timeout_s = 90
max_connections_per_ip = 16
realm = "test.example"
digest_algorithms = ["MD5", "SHA-256"]
min_expires_s = 30
max_expires_s = 600

[http]
listen = "127.0.0.1:18080"
api_key = "{INLINE_API_KEY}"

[[auth.keys]]
id = "SKdev"
algorithm = "HS256"
secret_file = {secret_file:?}

[media]
cache_dir = "/var/cache/tandem-test"
cache_max_bytes = 5000000
rtp_ports = "40000-40999"

[account]
sid = "AC0123456789abcdef0123456789abcdef"
auth_token_env = "TANDEM_TEST_AUTH_TOKEN"

[[numbers]]
number = "+15550100"
voice_url = "http://127.0.0.1:9000/voice"
voice_method = "GET"
voice_fallback_url = "http://127.0.0.1:9000/fallback"
status_callback = "http://127.0.0.1:9000/status"

[[trunks]]
name = "carrier"
allow = ["127.0.0.1/32", "198.51.100.0/24", "192.0.2.1"]
outbound_uri = "sip:gateway@198.51.100.10:5060"

[[sip_users]]
username = "1001"
password = "{INLINE_PASSWORD}"

[[sip_users]]
username = "1002"
password_env = "TANDEM_TEST_PASSWORD"

[log]
format = "json"

[drain]
grace_s = 12
"#,
        secret_file = secret_file.display().to_string()
    );
    let path = write(dir.path(), "tandem.toml", &config);
    let output = tandem()
        .arg("check-config")
        .arg(&path)
        .env("TANDEM_TEST_AUTH_TOKEN", ENV_AUTH_TOKEN)
        .env("TANDEM_TEST_PASSWORD", ENV_PASSWORD)
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");

    for secret in [
        INLINE_API_KEY,
        FILE_HS256_SECRET,
        ENV_AUTH_TOKEN,
        INLINE_PASSWORD,
        ENV_PASSWORD,
    ] {
        assert!(!stdout.contains(secret), "stdout shows {secret}:\n{stdout}");
        assert!(!stderr.contains(secret), "stderr shows {secret}:\n{stderr}");
    }
    // One placeholder per secret: api_key, the HS256 secret, auth_token, two passwords.
    assert_eq!(stdout.matches("\"<redacted>\"").count(), 5, "{stdout}");

    for line in [
        "data_dir = \"/var/lib/tandem-test\"",
        "listen = [\"udp:0.0.0.0:5070\", \"tcp:[::]:5071\"]",
        "advertised_address = \"203.0.113.7\"",
        "t1_ms = 400",
        "t2_ms = 3000",
        "t4_ms = 4500",
        "max_message_size = 20000",
        "tcp_idle_timeout_s = 90",
        "max_connections_per_ip = 16",
        "realm = \"test.example\"",
        "digest_algorithms = [\"MD5\", \"SHA-256\"]",
        "min_expires_s = 30",
        "max_expires_s = 600",
        "listen = \"127.0.0.1:18080\"",
        "id = \"SKdev\"",
        "algorithm = \"HS256\"",
        "cache_dir = \"/var/cache/tandem-test\"",
        "cache_max_bytes = 5000000",
        "rtp_ports = \"40000-40999\"",
        "sid = \"AC0123456789abcdef0123456789abcdef\"",
        "number = \"+15550100\"",
        "voice_method = \"GET\"",
        "voice_fallback_url = \"http://127.0.0.1:9000/fallback\"",
        "status_callback = \"http://127.0.0.1:9000/status\"",
        "allow = [\"127.0.0.1/32\", \"198.51.100.0/24\", \"192.0.2.1/32\"]",
        "outbound_uri = \"sip:gateway@198.51.100.10:5060\"",
        "username = \"1002\"",
        "format = \"json\"",
        "grace_s = 12",
    ] {
        assert!(
            stdout.lines().any(|printed| printed == line),
            "{line:?} missing from:\n{stdout}"
        );
    }
    // The output is itself TOML in the file's schema.
    let parsed: toml::Table = toml::from_str(&stdout).unwrap();
    assert!(parsed.contains_key("sip") && parsed.contains_key("trunks"));
}

#[test]
fn check_config_accepts_the_documented_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tandem.example.toml");
    let output = check_config(&example);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains("[[numbers]]"), "{stdout}");
    assert!(!stdout.contains("change-me"), "a secret leaked:\n{stdout}");
}

#[test]
fn check_config_spells_out_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty.toml", "");
    let output = check_config(&path);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    for line in [
        "listen = [\"udp:0.0.0.0:5060\", \"tcp:0.0.0.0:5060\"]",
        "listen = \"127.0.0.1:8080\"",
        "rtp_ports = \"20000-29999\"",
        "data_dir = \"./tandem-data\"",
        "cache_max_bytes = 1073741824",
        "name = \"local\"",
        "allow = [\"127.0.0.0/8\", \"::1/128\"]",
    ] {
        assert!(
            stdout.lines().any(|printed| printed == line),
            "{line:?} missing from:\n{stdout}"
        );
    }
}

#[test]
fn unknown_key_is_named_with_its_section() {
    expect_rejected(
        "[sip]\nlisen = [\"udp:0.0.0.0:5060\"]\n",
        &["unknown key", "sip.lisen"],
    );
}

#[test]
fn bad_values_are_named_by_their_full_path() {
    expect_rejected(
        "[sip]\nlisten = [\"udp:0.0.0.0:5060\", \"sctp:0.0.0.0:5060\"]\n",
        &["sip.listen[1]: unknown transport \"sctp\" (expected udp or tcp)"],
    );
    expect_rejected(
        "[[numbers]]\nnumber = \"1\"\nvoice_url = \"ftp://example.com/x\"\n",
        &["numbers[0].voice_url", "ftp://example.com/x"],
    );
    expect_rejected("[sip]\nt1_ms = \"soon\"\n", &["sip.t1_ms"]);
    expect_rejected(
        "[media]\nrtp_ports = \"20001-29999\"\n",
        &["media.rtp_ports"],
    );
}

#[test]
fn two_sources_for_one_secret_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = write(dir.path(), "secret", "0123456789abcdef0123456789abcdef\n");
    expect_rejected(
        &format!(
            "[[auth.keys]]\nid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\nsecret_file = {:?}\n",
            secret_file.display().to_string()
        ),
        &["auth.keys[0].secret", "auth.keys[0].secret_file"],
    );
}

#[test]
fn missing_environment_variable_is_named() {
    let stderr = expect_rejected(
        "[http]\napi_key_env = \"TANDEM_TEST_SURELY_UNSET_VARIABLE\"\n",
        &["http.api_key_env", "TANDEM_TEST_SURELY_UNSET_VARIABLE"],
    );
    assert!(stderr.contains("not set"), "{stderr}");
}

#[test]
fn bad_network_is_named_with_its_index() {
    expect_rejected(
        "[[trunks]]\nname = \"carrier\"\nallow = [\"198.51.100.0/33\"]\n",
        &["trunks[0].allow[0]", "198.51.100.0/33"],
    );
}

#[test]
fn unreadable_or_malformed_files_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let output = check_config(&dir.path().join("absent.toml"));
    assert_eq!(output.status.code(), Some(EXIT_USAGE));
    assert!(text(&output.stderr).contains("absent.toml"));
    expect_rejected("[sip\n", &["not valid TOML", "line 1"]);
}

#[test]
fn serve_with_bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.toml", "[http]\nlisten = \"nowhere\"\n");
    let output = tandem()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(EXIT_USAGE));
    assert!(text(&output.stderr).contains("http.listen"));

    // Without --config, TANDEM_CONFIG names the file.
    let output = tandem()
        .arg("serve")
        .env("TANDEM_CONFIG", &path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(EXIT_USAGE));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("http.listen"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_exit_64_and_help_exits_0() {
    for args in [
        &["frobnicate"][..],
        &["check-config"],
        &["serve", "--log-format", "xml"],
        &["serve", "--no-such-flag"],
        &[],
    ] {
        let output = tandem().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(EXIT_USAGE), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    let output = tandem().arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    assert!(
        help.contains("serve") && help.contains("check-config"),
        "{help}"
    );
}

fn verify(token: &str, secret: &str, kid: &str) -> presence::Claims {
    let key = presence::token::Key::new(kid, presence::token::Algorithm::Hs256, secret.as_bytes())
        .unwrap();
    let keys = presence::KeySet::new(vec![key], presence::token::Config::default()).unwrap();
    keys.verify(token, std::time::SystemTime::now()).unwrap()
}

#[test]
fn token_prints_one_line_signed_with_the_first_configured_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-test-signing-secret-of-at-least-32-bytes";
    let config = write(
        dir.path(),
        "tandem.toml",
        &format!(
            "data_dir = \"{}\"\n[[auth.keys]]\nid = \"SKtest\"\nalgorithm = \"HS256\"\nsecret = \"{secret}\"\n",
            dir.path().join("data").display()
        ),
    );
    let output = tandem()
        .args([
            "token",
            "--identity",
            "alice",
            "--incoming",
            "--ttl",
            "600",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let claims = verify(stdout.trim(), secret, "SKtest");
    assert_eq!(claims.identity().as_str(), "alice");
    assert!(claims.grants.voice.incoming);
    assert!(claims.grants.voice.outgoing.is_none());
}

#[test]
fn token_without_keys_uses_the_generated_development_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "tandem.toml",
        &format!("data_dir = \"{}\"\n", dir.path().join("data").display()),
    );
    let output = tandem()
        .args(["token", "--identity", "bob", "--outgoing-app"])
        .arg(format!("AP{}", "0".repeat(32)))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let secret = std::fs::read_to_string(dir.path().join("data/signing_key")).unwrap();
    let claims = verify(text(&output.stdout).trim(), secret.trim(), "SKdev");
    assert_eq!(claims.identity().as_str(), "bob");
    assert!(!claims.grants.voice.incoming);
    assert!(claims.grants.voice.outgoing.is_some());
}

#[test]
fn token_refuses_bad_arguments_with_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "tandem.toml",
        &format!("data_dir = \"{}\"\n", dir.path().join("data").display()),
    );
    for (args, named) in [
        (&["--identity", "alice", "--ttl", "86401"][..], "--ttl"),
        (&["--identity", "alice", "--ttl", "0"][..], "--ttl"),
        (&["--identity", "al ice"][..], "--identity"),
        (
            &["--identity", "alice", "--outgoing-app", "AP-12/3"][..],
            "--outgoing-app",
        ),
    ] {
        let output = tandem()
            .arg("token")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(EXIT_USAGE), "{args:?}");
        assert!(
            text(&output.stderr).contains(named),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(output.stdout.is_empty());
    }
}
