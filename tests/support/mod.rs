//! Test support for the binary-level tests: a `tandem serve` child process with a config written
//! for the test, on free ports, stopped on drop.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
