//! Test support for the binary-level tests: a `tandem serve` child process with a config written
//! for the test, on free ports, stopped on drop; and a webhook server serving fixed TwiML.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `tandem serve`; killed on drop if still running.
pub struct Tandem {
    /// The process.
    pub child: Child,
    /// SIP port (UDP and TCP, on 127.0.0.1).
    pub port: u16,
    /// HTTP port (on 127.0.0.1).
    pub http_port: u16,
    /// The working directory (holds the config and `data_dir`).
    pub dir: tempfile::TempDir,
}

impl Tandem {
    /// `tandem serve` with no configuration at all, in an empty working directory: SIP on
    /// 5060, HTTP on 8080.
    pub fn start_with_embedded_defaults() -> Tandem {
        let dir = tempfile::tempdir().unwrap();
        let child = serve(&dir, None);
        Tandem {
            child,
            port: 5060,
            http_port: 8080,
            dir,
        }
        .wait_listening()
    }

    /// `tandem serve` with the test configuration: loopback is a trunk, number +15550100 has
    /// an application whose webhook never answers (so its calls stay unanswered, with only
    /// 100 Trying, for as long as a test needs), SIP user 1001 (password `s3cret-1001`)
    /// exists, T1 is 100 ms.
    pub fn start() -> Tandem {
        Tandem::start_with("")
    }

    /// `start`'s configuration with `extra` TOML appended (e.g. more `[[numbers]]` whose
    /// webhook is a [`TwimlServer`]).
    pub fn start_with(extra: &str) -> Tandem {
        let dir = tempfile::tempdir().unwrap();
        let voice_url = silent_webhook();
        let port = free_port();
        let http_port = free_port();
        let config = format!(
            r#"
data_dir = "{data}"

[sip]
listen = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]
t1_ms = 100
# SIPp answers only the first challenge, and only MD5 (RFC 8760 prefers SHA-256 first, which is
# the default and is tested in-process).
digest_algorithms = ["MD5", "SHA-256"]

[http]
listen = "127.0.0.1:{http_port}"

[drain]
grace_s = 10

[[numbers]]
number = "+15550100"
voice_url = "{voice_url}"

[[trunks]]
name = "loopback"
allow = ["127.0.0.1/32"]

[[sip_users]]
username = "1001"
password = "s3cret-1001"
{extra}
"#,
            data = dir.path().join("data").display()
        );
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, config).unwrap();
        let child = serve(&dir, Some(&path));
        Tandem {
            child,
            port,
            http_port,
            dir,
        }
        .wait_listening()
    }

    /// The generated API key (in `data_dir` for `start`, `./tandem-data` for the defaults).
    pub fn api_key_path(&self) -> PathBuf {
        let configured = self.dir.path().join("data/api_key");
        if configured.exists() {
            configured
        } else {
            self.dir.path().join("tandem-data/api_key")
        }
    }

    /// The configuration file `start` wrote.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tandem.toml")
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until `/healthz` answers 503, i.e. the drain has started.
    pub fn wait_draining(&self) {
        let url = format!("http://127.0.0.1:{}/healthz", self.http_port);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = reqwest::blocking::get(&url).map(|r| r.status().as_u16());
            if status.as_ref().is_ok_and(|s| *s == 503) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "healthz never turned 503: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit and returns its exit code (`None`: still running).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn wait_listening(self) -> Tandem {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let sip = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            let http = TcpStream::connect(("127.0.0.1", self.http_port)).is_ok();
            if sip && http {
                return self;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "tandem did not start listening on {}/{}",
            self.port, self.http_port
        );
    }
}

impl Drop for Tandem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `tandem serve [--config FILE]` in `dir`, with warnings and errors on stderr.
fn serve(dir: &tempfile::TempDir, config: Option<&std::path::Path>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.arg("serve");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .current_dir(dir.path())
        .env_remove("TANDEM_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// A port free for both UDP and TCP on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// A webhook that accepts connections and never answers: a call fetching its instructions
/// stays unanswered until the webhook client's 15 s timeout.
pub fn silent_webhook() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/voice", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming().flatten() {
            held.push(connection);
        }
    });
    url
}

/// A webhook server on a std thread: answers each path with the TwiML set for it (404 for
/// other paths) and records every request, for tests that drive calls through Tandem.
pub struct TwimlServer {
    base: String,
    documents: Arc<Mutex<HashMap<String, String>>>,
    requests: Arc<Mutex<Vec<WebhookRequest>>>,
}

/// One request a [`TwimlServer`] received.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's and the form body's parameters, decoded, in order.
    pub params: Vec<(String, String)>,
}

impl WebhookRequest {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl TwimlServer {
    /// Listens on a free loopback port.
    pub fn start() -> TwimlServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = TwimlServer {
            base: format!("http://{}", listener.local_addr().unwrap()),
            documents: Arc::default(),
            requests: Arc::default(),
        };
        let documents = server.documents.clone();
        let requests = server.requests.clone();
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let documents = documents.clone();
                let requests = requests.clone();
                std::thread::spawn(move || serve_twiml(connection, &documents, &requests));
            }
        });
        server
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers `path` with `twiml` from now on.
    pub fn serve(&self, path: &str, twiml: &str) {
        self.documents
            .lock()
            .unwrap()
            .insert(path.to_owned(), twiml.to_owned());
    }

    /// The requests to `path` so far, oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<WebhookRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|request| request.path == path)
            .cloned()
            .collect()
    }
}

/// Reads one HTTP/1.1 request, records it and answers with its path's document; the
/// connection is closed after the response.
fn serve_twiml(
    connection: TcpStream,
    documents: &Mutex<HashMap<String, String>>,
    requests: &Mutex<Vec<WebhookRequest>>,
) {
    let _ = connection.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&connection);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params = form_decode(query);
    params.extend(form_decode(&String::from_utf8_lossy(&body)));
    requests.lock().unwrap().push(WebhookRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        params,
    });
    let document = documents.lock().unwrap().get(path).cloned();
    let response = match document {
        Some(twiml) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{twiml}",
            twiml.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let _ = (&connection).write_all(response.as_bytes());
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte).
fn form_decode(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'+', _) => decoded.push(b' '),
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 2;
            }
            (byte, _) => decoded.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
