//! JSON logs of the built binary: one JSON object per line, and every line about a call carries
//! its CallSid (operators grep one call's story out of a busy log).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn json_logs_carry_the_call_sid_on_every_call_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let http_port = support::free_port();
    let voice_url = support::silent_webhook();
    let config = format!(
        r#"
data_dir = "{data}"
[sip]
listen = ["udp:127.0.0.1:{port}"]
[http]
listen = "127.0.0.1:{http_port}"
[[numbers]]
number = "*"
voice_url = "{voice_url}"
[[trunks]]
name = "loopback"
allow = ["127.0.0.1/32"]
"#,
        data = dir.path().join("data").display()
    );
    let config_path = dir.path().join("tandem.toml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = dir.path().join("log.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config_path)
        .current_dir(dir.path())
        .env_remove("TANDEM_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();

    // A call that waits for its (silent) webhook, then is cancelled.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = socket.local_addr().unwrap();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        me.port() + 2
    );
    let head = |method: &str| {
        format!(
            "{method} sip:+15550100@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKlog1\r\nFrom: <sip:c@{me}>;tag=1\r\nTo: <sip:+15550100@127.0.0.1>\r\nCall-ID: log-1\r\nCSeq: 1 {method}\r\n"
        )
    };
    let invite = format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        head("INVITE"),
        sdp.len()
    );
    let cancel = format!("{}Content-Length: 0\r\n\r\n", head("CANCEL"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = [0u8; 4096];
    // Retransmit until Tandem is up and the call is cancelled (487).
    'call: loop {
        assert!(Instant::now() < deadline, "no 487");
        socket
            .send_to(invite.as_bytes(), ("127.0.0.1", port))
            .unwrap();
        while let Ok(n) = socket.recv(&mut buffer) {
            if buffer[..n].starts_with(b"SIP/2.0 100") {
                std::thread::sleep(Duration::from_millis(100));
                socket
                    .send_to(cancel.as_bytes(), ("127.0.0.1", port))
                    .unwrap();
            }
            if buffer[..n].starts_with(b"SIP/2.0 487") {
                break 'call;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let call_lines: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["target"].as_str().unwrap_or("").starts_with("router"))
        .collect();
    assert!(call_lines.len() >= 3, "{log}");
    let sid = |line: &serde_json::Value| {
        line["fields"]["call_sid"]
            .as_str()
            .or_else(|| line["span"]["call_sid"].as_str())
            .map(str::to_owned)
    };
    let first = sid(call_lines[0]).unwrap_or_else(|| panic!("no call_sid: {}", call_lines[0]));
    assert!(first.starts_with("CA") && first.len() == 34);
    for line in call_lines {
        assert_eq!(sid(line).as_deref(), Some(first.as_str()), "{line}");
    }
}
