//! The HTTP listener of the built binary: health, Prometheus metrics, the `/v1` API key with
//! JSON errors, the API key generated into `data_dir` with mode 0600, and health during a drain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::Tandem;

fn get(tandem: &Tandem, path: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let client = reqwest::blocking::Client::new();
    let mut request = client.get(format!("http://127.0.0.1:{}{path}", tandem.http_port));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().unwrap()
}

fn error_code(response: reqwest::blocking::Response) -> String {
    let body: serde_json::Value = response.json().unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[test]
fn health_metrics_and_the_v1_api_key() {
    let tandem = Tandem::start();
    let health = get(&tandem, "/healthz", None);
    assert_eq!(health.status(), 200);

    // The API key was generated on first start, readable by the owner only.
    let key_path = tandem.api_key_path();
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_path).unwrap();

    let missing = get(&tandem, "/v1/presence", None);
    assert_eq!(missing.status(), 401);
    assert_eq!(error_code(missing), "unauthorized");
    let wrong = get(&tandem, "/v1/presence", Some("not-the-key"));
    assert_eq!(wrong.status(), 401);
    let unknown = get(&tandem, "/v1/no-such-thing", Some(key.trim()));
    assert_eq!(unknown.status(), 404);
    assert_eq!(error_code(unknown), "not_found");

    // Presence: nobody is online yet; an unknown identity is offline with no devices.
    let alice: serde_json::Value = get(&tandem, "/v1/presence/alice", Some(key.trim()))
        .json()
        .unwrap();
    assert_eq!(
        alice,
        serde_json::json!({"identity": "alice", "status": "offline", "devices": []})
    );
    let online: serde_json::Value = get(&tandem, "/v1/presence", Some(key.trim()))
        .json()
        .unwrap();
    assert_eq!(online, serde_json::json!({"identities": []}));
    let bad = get(&tandem, "/v1/presence/al%20ice", Some(key.trim()));
    assert_eq!(bad.status(), 400);
    assert_eq!(error_code(bad), "invalid_identity");

    // A SIP OPTIONS shows up in the counters.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = socket.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKm1\r\nFrom: <sip:m@{me}>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: metrics-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    socket
        .send_to(options.as_bytes(), ("127.0.0.1", tandem.port))
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    socket.recv(&mut buf).unwrap();

    let metrics = get(&tandem, "/metrics", None);
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text().unwrap();
    assert!(
        text.contains("tandem_sip_requests_received_total{method=\"OPTIONS\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tandem_sip_responses_sent_total{class=\"2xx\"} 1"),
        "{text}"
    );
    assert!(text.contains("# TYPE tandem_calls_active gauge"), "{text}");
    assert!(text.contains("tandem_presence_devices_online 0"), "{text}");
}

#[test]
fn health_turns_503_while_draining() {
    let mut tandem = Tandem::start();
    // A live call (waiting for its instructions) keeps the drain going long enough to look at
    // /healthz.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = socket.local_addr().unwrap();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        me.port() + 2
    );
    let invite = format!(
        "INVITE sip:+15550100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKh1\r\nFrom: <sip:c@{me}>;tag=1\r\nTo: <sip:+15550100@127.0.0.1>\r\nCall-ID: health-1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    socket
        .send_to(invite.as_bytes(), ("127.0.0.1", tandem.port))
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).unwrap();
        if buf[..n].starts_with(b"SIP/2.0 100") {
            break;
        }
    }
    // The signal right after the 100 Trying: the router may not have taken the call yet,
    // and the drain must wait for it all the same (it once ended at once here, and the
    // process was gone before /healthz could be asked).
    tandem.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = get(&tandem, "/healthz", None).status();
        if status == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "healthz stayed {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    tandem.signal("TERM"); // a second signal stops at once
    assert_eq!(tandem.wait_exit(Duration::from_secs(5)), Some(0));
}
