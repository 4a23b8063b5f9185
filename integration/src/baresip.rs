//! A real SIP phone for end-to-end tests: [baresip](https://github.com/baresip/baresip) (Debian
//! package `baresip`, which `scripts/test` installs), run headless as a child process.
//!
//! Each [`Baresip`] gets a configuration directory of its own in a temporary directory:
//!
//! - `config`: SIP on UDP/TCP `127.0.0.1` port 0 (the kernel picks; the port is learned from
//!   the SIP trace), `net_interface 127.0.0.1` so that Contact and SDP carry the loopback
//!   address, RTP on 30000-32700 (clear of Tandem's test blocks in 10000-19999, the binary's
//!   default 20000-29999 and the kernel's ephemeral ports), no STUN/TURN/ICE modules, and no
//!   audio device: `ausine` (a [`SINE_HZ`] tone) is
//!   the source, no player is loaded, and the `sndfile` filter writes what the phone decodes
//!   to a WAV file, so a test can check the audio that reached it;
//! - `accounts`: one account registering to the given registrar with digest credentials,
//!   `answermode=auto`, PCMU and PCMA only.
//!
//! The phone runs with the SIP trace on (`-s`) and the `stdio` user interface: commands go to its
//! stdin (`/dial URI`, `/hangup`), and its output is recorded line by line, with every traced
//! SIP message parsed, for the test to wait on. Dropping it kills the process (by its pid).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sip::message::{parse, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The frequency of the tone the phone sends (the `ausine` source).
pub const SINE_HZ: u32 = 1000;

/// How long the phone may take to start and send its first REGISTER.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The phone quits on its own after this long (`-t`), should the test process die without
/// dropping it.
const LIFETIME: Duration = Duration::from_secs(300);
/// Output lines kept; the SIP trace of a test is a few hundred.
const MAX_LINES: usize = 50_000;
/// Where distributions install baresip's modules.
const MODULE_PATHS: [&str; 3] = [
    "/usr/lib/baresip/modules",
    "/usr/lib/x86_64-linux-gnu/baresip/modules",
    "/usr/local/lib/baresip/modules",
];

/// The account the phone registers with.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user name: the user part of the address-of-record and the digest user name.
    pub username: String,
    /// The digest password.
    pub password: String,
    /// The registrar (Tandem's SIP UDP address); the address-of-record is
    /// `sip:USERNAME@REGISTRAR`.
    pub registrar: SocketAddr,
}

/// A SIP message in the phone's trace.
#[derive(Debug, Clone)]
pub struct Traced {
    /// Where it came from.
    pub from: SocketAddr,
    /// Where it went.
    pub to: SocketAddr,
    /// The message as traced.
    pub text: String,
    /// The message, parsed by our own parser (`None` if it does not parse).
    pub message: Option<Message>,
    /// When the test saw it.
    pub at: Instant,
}

/// One line of the phone's output (SIP trace blocks are in [`Traced`] instead).
#[derive(Debug, Clone)]
pub struct Line {
    /// The text, without colour codes.
    pub text: String,
    /// When the test saw it.
    pub at: Instant,
}

/// A running baresip. Dropping it kills the process.
pub struct Baresip {
    child: Child,
    stdin: ChildStdin,
    output: Arc<Mutex<Output>>,
    changes: watch::Receiver<u64>,
    readers: Vec<JoinHandle<()>>,
    sip_addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// What the phone printed so far.
#[derive(Debug, Default)]
struct Output {
    lines: Vec<Line>,
    trace: Vec<Traced>,
    /// A trace block being read: its addresses (once its first line came) and text.
    block: Option<(Option<(SocketAddr, SocketAddr)>, String)>,
    /// Output streams that reached end of file (the process exited).
    closed: usize,
}

impl Baresip {
    /// Starts baresip with `account` and waits until it is ready and has sent its first
    /// REGISTER. Panics if baresip is not installed, or does not start.
    pub async fn start(account: &Account) -> Baresip {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("config"), config(dir.path()))
            .expect("the config file is written");
        std::fs::write(dir.path().join("accounts"), accounts(account))
            .expect("the accounts file is written");
        let spawned = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .arg("-s")
            .arg("-t")
            .arg(LIFETIME.as_secs().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("baresip is not installed: run scripts/test, or `apt-get install baresip`")
            }
            Err(error) => panic!("baresip did not start: {error}"),
        };
        let stdin = child.stdin.take().expect("a piped stdin");
        let stdout = child.stdout.take().expect("a piped stdout");
        let stderr = child.stderr.take().expect("a piped stderr");
        let output = Arc::new(Mutex::new(Output::default()));
        let (changed, changes) = watch::channel(0);
        let changed = Arc::new(changed);
        let readers = vec![
            tokio::spawn(read(stdout, output.clone(), changed.clone())),
            tokio::spawn(read(stderr, output.clone(), changed)),
        ];
        let mut phone = Baresip {
            child,
            stdin,
            output,
            changes,
            readers,
            // Replaced below, once the trace shows the first REGISTER.
            sip_addr: account.registrar,
            dir,
        };
        phone.wait_line("baresip is ready", START_TIMEOUT).await;
        let register = phone
            .wait_message("the first REGISTER", START_TIMEOUT, |traced| {
                traced.text.starts_with("REGISTER ")
            })
            .await;
        phone.sip_addr = register.from;
        phone
    }

    /// The phone's SIP UDP address (where its REGISTER came from).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// The phone's configuration directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends a command of the `stdio` user interface, e.g. `dial sip:+15550100@127.0.0.1:5060`.
    pub async fn command(&mut self, command: &str) {
        let line = format!("/{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("baresip reads its stdin");
        self.stdin.flush().await.expect("baresip reads its stdin");
    }

    /// Places a call to `uri`.
    pub async fn dial(&mut self, uri: &str) {
        self.command(&format!("dial {uri}")).await;
    }

    /// Hangs up the current call.
    pub async fn hangup(&mut self) {
        self.command("hangup").await;
    }

    /// Every output line so far (SIP trace blocks aside).
    pub fn lines(&self) -> Vec<Line> {
        lock(&self.output).lines.clone()
    }

    /// Every SIP message traced so far, in order.
    pub fn trace(&self) -> Vec<Traced> {
        lock(&self.output).trace.clone()
    }

    /// The SIP messages the phone sent so far.
    pub fn sent(&self) -> Vec<Traced> {
        let sip_addr = self.sip_addr;
        self.trace()
            .into_iter()
            .filter(|traced| traced.from == sip_addr)
            .collect()
    }

    /// The SIP messages the phone received so far.
    pub fn received(&self) -> Vec<Traced> {
        let sip_addr = self.sip_addr;
        self.trace()
            .into_iter()
            .filter(|traced| traced.to == sip_addr)
            .collect()
    }

    /// The output so far as text, trace included, for failure messages (the last `max_lines`
    /// lines).
    pub fn log_text(&self, max_lines: usize) -> String {
        let output = lock(&self.output);
        let mut entries: Vec<(Instant, String)> = output
            .lines
            .iter()
            .map(|line| (line.at, line.text.clone()))
            .chain(output.trace.iter().map(|traced| {
                (
                    traced.at,
                    format!(
                        "# {} -> {}\n{}",
                        traced.from,
                        traced.to,
                        traced.text.trim_end()
                    ),
                )
            }))
            .collect();
        entries.sort_by_key(|(at, _)| *at);
        let skip = entries.len().saturating_sub(max_lines);
        entries
            .into_iter()
            .skip(skip)
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for an output line containing `needle` (one printed earlier counts) and returns
    /// it; panics after `timeout`, or when the process exits, with the log.
    pub async fn wait_line(&self, needle: &str, timeout: Duration) -> Line {
        self.wait(&format!("a line with {needle:?}"), timeout, |output| {
            output
                .lines
                .iter()
                .find(|line| line.text.contains(needle))
                .cloned()
        })
        .await
    }

    /// Waits for the first traced SIP message that `check` accepts (one traced earlier counts)
    /// and returns it; panics after `timeout`, or when the process exits, with the log.
    pub async fn wait_message(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Traced) -> bool,
    ) -> Traced {
        self.wait(what, timeout, |output| {
            output.trace.iter().find(|traced| check(traced)).cloned()
        })
        .await
    }

    /// The samples the phone decoded from the RTP it received so far (the `sndfile` filter's
    /// WAV file of the latest call: 16-bit mono at the codec's rate), or `None` if no call
    /// has started its audio yet.
    pub fn decoded_audio(&self) -> Option<Vec<i16>> {
        let path = self.decoded_audio_path()?;
        let bytes = std::fs::read(path).ok()?;
        wav_samples(&bytes)
    }

    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Output) -> Option<T>,
    ) -> T {
        let mut changes = self.changes.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let exited = {
                let output = lock(&self.output);
                if let Some(found) = check(&output) {
                    return found;
                }
                output.closed == 2
            };
            let reason = if exited {
                "baresip exited"
            } else if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                "timed out"
            } else {
                continue;
            };
            panic!(
                "baresip: {what} expected within {timeout:?}; {reason}. Its output:\n{}",
                self.log_text(300)
            );
        }
    }

    /// The WAV file the `sndfile` filter writes decoded audio to, as its log line names it.
    fn decoded_audio_path(&self) -> Option<PathBuf> {
        const MARK: &str = "dumping decode audio to ";
        let output = lock(&self.output);
        let line = output
            .lines
            .iter()
            .rev()
            .find(|line| line.text.contains(MARK))?;
        let (_, path) = line.text.split_once(MARK)?;
        Some(PathBuf::from(path.trim()))
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        // SIGKILL to the child's pid (tokio's `start_kill`); `kill_on_drop` would do the same.
        let _ = self.child.start_kill();
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// Decodes a G.711 µ-law byte to a 16-bit linear sample (ITU-T G.711).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let byte = !byte;
    let exponent = (byte >> 4) & 0x07;
    let mantissa = i32::from(byte & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let sample = if byte & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    i16::try_from(sample).unwrap_or(i16::MAX)
}

/// Decodes a G.711 A-law byte to a 16-bit linear sample (ITU-T G.711).
pub fn alaw_to_linear(byte: u8) -> i16 {
    let byte = byte ^ 0x55;
    let exponent = (byte >> 4) & 0x07;
    let mantissa = i32::from(byte & 0x0f);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        _ => ((mantissa << 4) + 0x108) << (exponent - 1),
    };
    let sample = if byte & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    };
    i16::try_from(sample).unwrap_or(i16::MAX)
}

/// The frequency of a tone in `samples` at `rate` Hz, from its zero crossings.
pub fn tone_frequency(samples: &[i16], rate: u32) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let crossings = samples
        .windows(2)
        .filter(|pair| (pair[0] >= 0) != (pair[1] >= 0))
        .count();
    let seconds = samples.len() as f64 / f64::from(rate);
    crossings as f64 / 2.0 / seconds
}

/// The `config` file: headless, loopback only, no NAT traversal (see the module comment).
fn config(dir: &Path) -> String {
    let module_path = MODULE_PATHS
        .iter()
        .find(|path| Path::new(path).is_dir())
        .unwrap_or(&MODULE_PATHS[0]);
    format!(
        "\
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:0
net_interface\t\t127.0.0.1
call_local_timeout\t30
call_max_calls\t\t4
audio_source\t\tausine,{SINE_HZ}
ausrc_srate\t\t48000
ausrc_channels\t\t2
audio_level\t\tno
rtp_tos\t\t\t0
rtp_ports\t\t30000-32700
rtcp_mux\t\tno
jitter_buffer_delay\t1-5
rtp_stats\t\tno
module_path\t\t{module_path}
module\t\t\tstdio.so
module\t\t\tg711.so
module\t\t\tausine.so
module\t\t\tsndfile.so
snd_path\t\t{dir}
module_tmp\t\taccount.so
module_app\t\tmenu.so
",
        dir = dir.display(),
    )
}

/// The `accounts` file: one account with digest credentials, answering automatically.
fn accounts(account: &Account) -> String {
    format!(
        "<sip:{user}@{registrar}>;auth_user={user};auth_pass={password};answermode=auto;\
         regint=600;audio_codecs=PCMU,PCMA;ptime=20\n",
        user = account.username,
        registrar = account.registrar,
        password = account.password,
    )
}

/// Reads one output stream of the process into `output` until end of file.
async fn read(
    mut stream: impl AsyncRead + Unpin,
    output: Arc<Mutex<Output>>,
    changed: Arc<watch::Sender<u64>>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 8192];
    loop {
        let count = stream.read(&mut buffer).await.unwrap_or(0);
        if count == 0 {
            let mut output = lock(&output);
            if !pending.is_empty() {
                output.push_raw_line(&String::from_utf8_lossy(&pending));
            }
            output.closed += 1;
            drop(output);
            changed.send_modify(|n| *n += 1);
            return;
        }
        pending.extend_from_slice(&buffer[..count]);
        let mut output = lock(&output);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            output.push_raw_line(&String::from_utf8_lossy(&line[..end]));
        }
        drop(output);
        changed.send_modify(|n| *n += 1);
    }
}

impl Output {
    /// Adds one raw line (colour codes included, newline removed).
    fn push_raw_line(&mut self, raw: &str) {
        let now = Instant::now();
        // baresip's SIP trace prints each message between a cyan `#` line and a colour reset:
        // "\x1b[36;1m#\n" "UDP FROM -> TO\n" MESSAGE "\x1b[;m\n".
        if raw.starts_with("\x1b[36;1m#") {
            self.block = Some((None, String::new()));
            return;
        }
        if let Some((addresses, text)) = &mut self.block {
            if raw.starts_with("\x1b[;m") {
                let (addresses, text) = (*addresses, std::mem::take(text));
                self.block = None;
                if let Some((from, to)) = addresses {
                    let message = parse(text.as_bytes()).ok();
                    if self.trace.len() < MAX_LINES {
                        self.trace.push(Traced {
                            from,
                            to,
                            text,
                            message,
                            at: now,
                        });
                    }
                }
                return;
            }
            match addresses {
                None => *addresses = trace_addresses(raw),
                Some(_) => {
                    text.push_str(raw.trim_end_matches('\r'));
                    text.push_str("\r\n");
                }
            }
            return;
        }
        // The menu rewrites a call-status line with carriage returns while a call is up; keep
        // the other pieces.
        for piece in strip_colours(raw).split('\r') {
            let piece = piece.trim_end();
            let is_status = piece.starts_with("[0:") && piece.contains("audio=");
            if piece.is_empty() || is_status || self.lines.len() >= MAX_LINES {
                continue;
            }
            self.lines.push(Line {
                text: piece.to_owned(),
                at: now,
            });
        }
    }
}

/// The addresses of a trace block's first line, `UDP 127.0.0.1:5060 -> 127.0.0.1:40000`.
fn trace_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut fields = line.split_whitespace();
    let _transport = fields.next()?;
    let from = fields.next()?.parse().ok()?;
    let _arrow = fields.next()?;
    let to = fields.next()?.parse().ok()?;
    Some((from, to))
}

/// `text` without ANSI colour sequences (`ESC [ ... letter`).
fn strip_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The 16-bit samples of a WAV file's `data` chunk, up to the end of the file (the writer
/// fixes the chunk's length only when it closes the file).
fn wav_samples(bytes: &[u8]) -> Option<Vec<i16>> {
    if bytes.get(..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let length = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        if id == b"data" {
            let data = &bytes[at + 8..];
            return Some(
                data.chunks_exact(2)
                    .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                    .collect(),
            );
        }
        // RFC 2361 / RIFF: chunks are padded to an even length.
        at += 8 + length + (length & 1);
    }
    None
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_decoding_matches_the_reference_values() {
        // ITU-T G.711 tables: µ-law 0xff and A-law 0xd5 are the smallest positive codes.
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x11), -15484);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
    }

    #[test]
    fn a_tone_frequency_is_read_from_zero_crossings() {
        let rate = 8000;
        let samples: Vec<i16> = (0..8000)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0 + 0.3;
                (phase.sin() * 10000.0) as i16
            })
            .collect();
        let frequency = tone_frequency(&samples, rate);
        assert!((frequency - 1000.0).abs() < 5.0, "{frequency}");
        assert_eq!(tone_frequency(&[0; 100], rate), 0.0);
    }

    #[test]
    fn trace_blocks_become_messages_and_status_lines_are_dropped() {
        let mut output = Output::default();
        for raw in [
            "baresip is ready.",
            "\x1b[36;1m#",
            "UDP 127.0.0.1:4000 -> 127.0.0.1:5060",
            "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r",
            "Via: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK1\r",
            "From: <sip:a@127.0.0.1>;tag=1\r",
            "To: <sip:127.0.0.1:5060>\r",
            "Call-ID: x\r",
            "CSeq: 1 OPTIONS\r",
            "Content-Length: 0\r",
            "\r",
            "\x1b[;m",
            "[0:00:01] audio=0/0 (bit/s)    \r[0:00:01] audio=0/0 (bit/s)    \rCall terminated",
        ] {
            output.push_raw_line(raw);
        }
        let texts: Vec<&str> = output.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["baresip is ready.", "Call terminated"]);
        assert_eq!(output.trace.len(), 1);
        let traced = &output.trace[0];
        assert_eq!(traced.from, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(traced.to, "127.0.0.1:5060".parse().unwrap());
        assert!(matches!(traced.message, Some(Message::Request(_))));
    }

    #[test]
    fn wav_data_is_read_past_other_chunks() {
        let mut wav = b"RIFF\0\0\0\0WAVE".to_vec();
        wav.extend_from_slice(b"fmt \x03\0\0\0abc\0");
        wav.extend_from_slice(b"data\0\0\0\0");
        wav.extend_from_slice(&[0x01, 0x00, 0xff, 0xff]);
        assert_eq!(wav_samples(&wav), Some(vec![1, -1]));
        assert_eq!(wav_samples(b"RIFX"), None);
    }
}
