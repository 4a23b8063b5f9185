//! Trunk calls through the built `tandem` binary, checked by a real, independent SIP peer:
//! SIPp (Debian package `sip-tester`) places calls with the scenarios in `tests/sipp/calls/`
//! over UDP and TCP, against call instructions served by the test's own webhook
//! ([`TwimlServer`]); where Tandem dials out (`<Dial><Sip>`), a second SIPp plays the called
//! party. Every run must end with every call successful (SIPp's exit code and its statistics:
//! all calls successful, none failed), and each scenario fails on any message it does not
//! expect, so the scenarios spell out the message flow asserted.
//!
//! SIPp is required, as for `tests/sipp.rs`: a missing `sipp` fails these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, which, Tandem, TwimlServer};

/// Calls per SIPp run: enough to overlap a few calls, few enough to keep the file fast.
const CALLS: usize = 3;

/// Calls SIPp starts per second.
const RATE: &str = "10";

/// The webhook path every test's number fetches its instructions from.
const VOICE: &str = "/voice";

/// An answered call that stays up until the caller hangs up.
const PAUSE: &str = r#"<Response><Pause length="10"/></Response>"#;

/// SIPp's transports: one UDP socket, or one TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

use Transport::{Tcp, Udp};

impl Transport {
    /// SIPp's `-t` value.
    fn flag(self) -> &'static str {
        match self {
            Udp => "u1",
            Tcp => "t1",
        }
    }

    /// The URI parameter that makes Tandem dial over this transport.
    fn uri_param(self) -> &'static str {
        match self {
            Udp => "",
            Tcp => ";transport=tcp",
        }
    }
}

/// A basic call: answered at once, ended by the caller's BYE.
#[test]
fn basic_call_caller_hangs_up() {
    let (tandem, webhook) = tandem_with_number("+15550201");
    webhook.serve(VOICE, PAUSE);
    for transport in [Udp, Tcp] {
        caller(&tandem, "basic_call.xml", transport, "+15550201").run();
    }
    let fetches = webhook.requests_to(VOICE);
    assert_eq!(fetches.len(), 2 * CALLS, "{fetches:?}");
    for fetch in &fetches {
        assert_eq!(fetch.method, "POST");
        assert_eq!(fetch.param("To"), Some("+15550201"), "{fetch:?}");
        assert_eq!(fetch.param("From"), Some("+15551234"), "{fetch:?}");
        assert_eq!(fetch.param("Direction"), Some("inbound"), "{fetch:?}");
        assert!(fetch
            .param("CallSid")
            .is_some_and(|sid| sid.starts_with("CA")));
    }
}

/// `<Hangup/>` after a pause: Tandem sends BYE and the caller answers it.
#[test]
fn hangup_verb_sends_bye_to_the_caller() {
    let (tandem, webhook) = tandem_with_number("+15550202");
    webhook.serve(
        VOICE,
        r#"<Response><Pause length="1"/><Hangup/></Response>"#,
    );
    for transport in [Udp, Tcp] {
        caller(&tandem, "caller_receives_bye.xml", transport, "+15550202").run();
    }
    assert_eq!(webhook.requests_to(VOICE).len(), 2 * CALLS);
}

/// CANCEL while a dialled SIP party rings: the caller sees the relayed 180, cancels, gets 200
/// and 487; the called party must be cancelled by Tandem in turn.
#[test]
fn cancel_while_ringing_cancels_the_dialled_party() {
    let (tandem, webhook) = tandem_with_number("+15550203");
    for transport in [Udp, Tcp] {
        let port = free_port();
        webhook.serve(
            VOICE,
            &format!(
                r#"<Response><Dial answerOnBridge="true" timeout="20"><Sip>sip:x@127.0.0.1:{port}{}</Sip></Dial></Response>"#,
                transport.uri_param()
            ),
        );
        let called = called_party("uas_ring_cancelled.xml", transport, port);
        caller(&tandem, "cancel_ringing.xml", transport, "+15550203").run();
        called.finish();
    }
}

/// `<Reject reason="busy"/>`: 486, never answered.
#[test]
fn reject_busy_refuses_with_486() {
    let (tandem, webhook) = tandem_with_number("+15550204");
    webhook.serve(VOICE, r#"<Response><Reject reason="busy"/></Response>"#);
    for transport in [Udp, Tcp] {
        caller(&tandem, "rejected_busy.xml", transport, "+15550204").run();
    }
    assert_eq!(webhook.requests_to(VOICE).len(), 2 * CALLS);
}

/// A dialled SIP party answers 486: the dial ends `busy` (docs/router.md), the action URL
/// learns it, and its `<Reject reason="busy"/>` refuses the caller, who was never answered
/// (`answerOnBridge`), with 486.
#[test]
fn dialled_party_busy_reaches_the_action_url() {
    let (tandem, webhook) = tandem_with_number("+15550205");
    webhook.serve(
        "/after-dial",
        r#"<Response><Reject reason="busy"/></Response>"#,
    );
    for transport in [Udp, Tcp] {
        let port = free_port();
        webhook.serve(
            VOICE,
            &format!(
                r#"<Response><Dial answerOnBridge="true" action="/after-dial"><Sip>sip:x@127.0.0.1:{port}{}</Sip></Dial></Response>"#,
                transport.uri_param()
            ),
        );
        let called = called_party("uas_busy.xml", transport, port);
        caller(&tandem, "rejected_busy.xml", transport, "+15550205").run();
        called.finish();
    }
    let actions = webhook.requests_to("/after-dial");
    assert_eq!(actions.len(), 2 * CALLS, "{actions:?}");
    for action in &actions {
        assert_eq!(action.param("DialCallStatus"), Some("busy"), "{action:?}");
        assert_eq!(action.param("To"), Some("+15550205"), "{action:?}");
    }
}

/// Hold and unhold with re-INVITEs (a=sendonly, then a=sendrecv), each answered with SDP.
#[test]
fn reinvite_hold_and_unhold() {
    let (tandem, webhook) = tandem_with_number("+15550206");
    webhook.serve(VOICE, PAUSE);
    for transport in [Udp, Tcp] {
        caller(&tandem, "hold_unhold.xml", transport, "+15550206").run();
    }
}

/// OPTIONS keep-alives: out of dialog (the conformance scenario, several in a row) and
/// inside a call.
#[test]
fn options_keepalives_in_and_out_of_dialog() {
    let (tandem, webhook) = tandem_with_number("+15550207");
    webhook.serve(VOICE, PAUSE);
    for transport in [Udp, Tcp] {
        caller(&tandem, "../options.xml", transport, "+15550207")
            .calls(5)
            .run();
        caller(&tandem, "options_in_dialog.xml", transport, "+15550207").run();
    }
    // Out-of-dialog OPTIONS start no call: only the in-dialog runs fetched instructions.
    assert_eq!(webhook.requests_to(VOICE).len(), 2 * CALLS);
}

/// `<Dial><Sip>` bridged to a SIPp called party; the caller hangs up and Tandem relays the
/// BYE to the called party.
#[test]
fn dial_sip_bridged_caller_hangs_up() {
    let (tandem, webhook) = tandem_with_number("+15550208");
    for transport in [Udp, Tcp] {
        let port = free_port();
        // answerOnBridge: the caller's 200 comes only once the called party answered, so
        // the caller's BYE always finds the bridge up.
        webhook.serve(
            VOICE,
            &format!(
                r#"<Response><Dial answerOnBridge="true"><Sip>sip:uas@127.0.0.1:{port}{}</Sip></Dial></Response>"#,
                transport.uri_param()
            ),
        );
        let called = called_party("uas_answer.xml", transport, port);
        caller(&tandem, "basic_call.xml", transport, "+15550208").run();
        called.finish();
    }
}

/// `<Dial><Sip>` bridged to a SIPp called party that hangs up: Tandem answers its BYE and
/// sends BYE to the caller (the dial ends and no verb follows).
#[test]
fn dial_sip_bridged_called_party_hangs_up() {
    let (tandem, webhook) = tandem_with_number("+15550209");
    for transport in [Udp, Tcp] {
        let port = free_port();
        webhook.serve(
            VOICE,
            &format!(
                r#"<Response><Dial><Sip>sip:uas@127.0.0.1:{port}{}</Sip></Dial></Response>"#,
                transport.uri_param()
            ),
        );
        let called = called_party("uas_answer_hangs_up.xml", transport, port);
        caller(&tandem, "caller_receives_bye.xml", transport, "+15550209").run();
        called.finish();
    }
}

/// Tandem's own requests carry one Via, its own (RFC 3261 §8.1.1.7: the UAC inserts one; a
/// second names a hop that does not exist). Checked on the BYEs Tandem sends to a caller
/// (`<Hangup/>`) and to a dialled party (the caller hung up).
#[test]
fn tandem_byes_carry_one_via() {
    let (tandem, webhook) = tandem_with_number("+15550210");
    webhook.serve(
        VOICE,
        r#"<Response><Pause length="1"/><Hangup/></Response>"#,
    );
    let to_caller = caller(&tandem, "caller_receives_bye.xml", Udp, "+15550210").run();
    assert_one_via(&to_caller, "BYE");

    let port = free_port();
    webhook.serve(
        VOICE,
        &format!(
            r#"<Response><Dial answerOnBridge="true"><Sip>sip:uas@127.0.0.1:{port}</Sip></Dial></Response>"#
        ),
    );
    let called = called_party("uas_answer.xml", Udp, port);
    caller(&tandem, "basic_call.xml", Udp, "+15550210").run();
    let to_called = called.finish();
    assert_one_via(&to_called, "BYE");
}

/// Tandem's 200 to a re-INVITE stops being retransmitted once ACKed (RFC 3261 §13.3.1.4).
/// Over UDP with T1 = 100 ms, the 200 to the hold re-INVITE would be sent again at +100 ms,
/// +300 ms, ... while the call continues; one retransmission is tolerated (an ACK delayed
/// past T1 on a loaded machine).
#[test]
fn reinvite_200_is_not_retransmitted_after_its_ack() {
    let (tandem, webhook) = tandem_with_number("+15550211");
    webhook.serve(VOICE, PAUSE);
    let run = caller(&tandem, "hold_unhold.xml", Udp, "+15550211").run();
    let trace = run.trace();
    let mut per_call: Vec<(String, usize)> = Vec::new();
    for message in trace.iter().filter(|message| message.received) {
        if message.start_line().starts_with("SIP/2.0 200")
            && message.header("CSeq").as_deref() == Some("2 INVITE")
        {
            let call = message.header("Call-ID").unwrap_or_default();
            match per_call.iter_mut().find(|(id, _)| *id == call) {
                Some((_, count)) => *count += 1,
                None => per_call.push((call, 1)),
            }
        }
    }
    assert_eq!(per_call.len(), CALLS, "{per_call:?}");
    for (call, count) in &per_call {
        assert!(
            *count <= 2,
            "call {call}: the 200 to the hold re-INVITE arrived {count} times, although ACKed"
        );
    }
}

/// A Tandem whose `number` fetches its instructions from a fresh [`TwimlServer`]'s
/// [`VOICE`] path.
fn tandem_with_number(number: &str) -> (Tandem, TwimlServer) {
    let webhook = TwimlServer::start();
    let tandem = Tandem::start_with(&format!(
        "\n[[numbers]]\nnumber = \"{number}\"\nvoice_url = \"{}\"\n",
        webhook.url(VOICE)
    ));
    (tandem, webhook)
}

/// Asserts that every `method` request the run received has exactly one Via, and that
/// there was one per call.
fn assert_one_via(run: &Sipp, method: &str) {
    let trace = run.trace();
    let requests: Vec<&Traced> = trace
        .iter()
        .filter(|message| message.received && message.start_line().starts_with(method))
        .collect();
    assert_eq!(requests.len(), run.calls, "{method}s received");
    for request in requests {
        let vias = request
            .headers()
            .filter(|line| header_name_is(line, "Via") || header_name_is(line, "v"))
            .count();
        assert_eq!(vias, 1, "{}", request.text);
    }
}

/// One SIPp run: a scenario, its transport and how many calls.
struct Sipp {
    scenario: PathBuf,
    transport: Transport,
    calls: usize,
    /// Where the run's message, error and statistics files go.
    logs: tempfile::TempDir,
}

impl Sipp {
    fn new(scenario: &str, transport: Transport, calls: usize) -> Sipp {
        Sipp {
            scenario: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/sipp/calls")
                .join(scenario),
            transport,
            calls,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    /// The command, with the options every run shares: a global timeout that counts as a
    /// failure and a default timeout for every expected message, so that a hang fails fast;
    /// and the message, error and statistics traces.
    fn command(&self) -> Command {
        let sipp = which("sipp").unwrap_or_else(|| {
            panic!("sipp not found: install the Debian package sip-tester (the README's test command does)")
        });
        let mut command = Command::new(sipp);
        command
            .current_dir(self.logs.path())
            .arg("-sf")
            .arg(&self.scenario)
            .args(["-t", self.transport.flag(), "-i", "127.0.0.1"])
            .args(["-m", &self.calls.to_string()])
            .args([
                "-timeout",
                "20s",
                "-timeout_error",
                "-recv_timeout",
                "10000",
            ])
            .args(["-nostdin", "-max_recv_loops", "1000"])
            .args(["-trace_msg", "-message_file"])
            .arg(self.log("messages"))
            .args(["-trace_err", "-error_file"])
            .arg(self.log("errors"))
            .args(["-trace_stat", "-stf"])
            .arg(self.log("stats"))
            .stdin(Stdio::null());
        command
    }

    fn log(&self, name: &str) -> PathBuf {
        self.logs.path().join(format!("{name}.log"))
    }

    /// Asserts SIPp's exit code says every call succeeded (0) and its statistics agree.
    fn check(&self, code: Option<i32>, output: &Output) {
        let name = self.scenario.file_name().unwrap().to_string_lossy();
        let stats = std::fs::read_to_string(self.log("stats")).unwrap_or_default();
        let (successful, failed) = totals(&stats);
        assert!(
            code == Some(0) && successful == Some(self.calls) && failed == Some(0),
            "sipp {name} over {:?}: exit {code:?}, successful {successful:?}, failed {failed:?} \
             of {} calls\n{}",
            self.transport,
            self.calls,
            self.diagnostics(output)
        );
    }

    /// SIPp's screen, its error log and the last of its message trace, for a failure message.
    fn diagnostics(&self, output: &Output) -> String {
        let read = |name: &str| std::fs::read_to_string(self.log(name)).unwrap_or_default();
        format!(
            "--- stderr\n{}\n--- stdout (last lines)\n{}\n--- errors\n{}\n--- messages (last lines)\n{}",
            String::from_utf8_lossy(&output.stderr),
            last_lines(&String::from_utf8_lossy(&output.stdout), 40),
            read("errors"),
            last_lines(&read("messages"), 150)
        )
    }

    /// The messages SIPp sent and received (`-trace_msg`), in order.
    fn trace(&self) -> Vec<Traced> {
        let text = std::fs::read_to_string(self.log("messages")).unwrap_or_default();
        // Each message follows a line of dashes and a timestamp, then a line saying whether
        // it was sent or received, then the message itself.
        text.split("\n-----------------------------------------------")
            .filter_map(|block| {
                let mut lines = block.lines().skip(1);
                let direction = lines.next()?;
                let received = direction.contains("message received");
                if !received && !direction.contains("message sent") {
                    return None;
                }
                let text: Vec<&str> = lines.skip_while(|line| line.trim().is_empty()).collect();
                Some(Traced {
                    received,
                    text: text.join("\n"),
                })
            })
            .collect()
    }
}

/// One message of a SIPp message trace.
#[derive(Debug)]
struct Traced {
    /// Received by SIPp (else sent).
    received: bool,
    /// The message, start line first.
    text: String,
}

impl Traced {
    fn start_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The header lines (up to the blank line before the body).
    fn headers(&self) -> impl Iterator<Item = &str> {
        self.text
            .lines()
            .skip(1)
            .take_while(|line| !line.trim().is_empty())
    }

    /// The value of the first header `name`.
    fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .find(|line| header_name_is(line, name))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim().to_owned())
    }
}

/// Whether `line` is a header line named `name` (case-insensitive).
fn header_name_is(line: &str, name: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(header, _)| header.trim().eq_ignore_ascii_case(name))
}

/// SIPp placing `CALLS` calls to Tandem as a trunk would, to the number `service`.
fn caller(tandem: &Tandem, scenario: &str, transport: Transport, service: &str) -> CallerRun {
    CallerRun {
        sipp: Sipp::new(scenario, transport, CALLS),
        tandem_port: tandem.port,
        service: service.to_owned(),
    }
}

/// A caller's SIPp run.
struct CallerRun {
    sipp: Sipp,
    tandem_port: u16,
    service: String,
}

impl CallerRun {
    /// Places `calls` calls instead.
    fn calls(mut self, calls: usize) -> CallerRun {
        self.sipp.calls = calls;
        self
    }

    /// Runs the calls to completion, asserts they all succeeded, and returns the run (its
    /// traces stay readable until it drops).
    fn run(self) -> Sipp {
        let mut command = self.sipp.command();
        command
            .arg(format!("127.0.0.1:{}", self.tandem_port))
            // An explicit port: without one SIPp takes 5060 if it is free, where another
            // test's Tandem may want to listen.
            .args(["-p", &free_port().to_string()])
            .args(["-s", &self.service, "-r", RATE]);
        let output = command.output().unwrap();
        self.sipp.check(output.status.code(), &output);
        self.sipp
    }
}

/// A SIPp called party (UAS) listening on a port of its own, started before the caller and
/// checked after it.
struct CalledParty {
    sipp: Sipp,
    child: KillOnDrop,
}

/// A child process killed if the test ends (or panics) before waiting for it.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts SIPp as the called party with `scenario` on `port`, for `CALLS` calls, and waits
/// until it listens.
fn called_party(scenario: &str, transport: Transport, port: u16) -> CalledParty {
    let sipp = Sipp::new(scenario, transport, CALLS);
    let stdout = File::create(sipp.log("stdout")).unwrap();
    let child = sipp
        .command()
        .args(["-p", &port.to_string()])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let called = CalledParty {
        sipp,
        child: KillOnDrop(Some(child)),
    };
    // Bound once our own bind of the port fails.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let free = match transport {
            Udp => UdpSocket::bind(("127.0.0.1", port)).is_ok(),
            Tcp => TcpListener::bind(("127.0.0.1", port)).is_ok(),
        };
        if !free {
            return called;
        }
        assert!(Instant::now() < deadline, "sipp never bound port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl CalledParty {
    /// Waits for the called party's SIPp to finish its calls, asserts they all succeeded,
    /// and returns the run.
    fn finish(self) -> Sipp {
        let CalledParty { sipp, mut child } = self;
        let deadline = Instant::now() + Duration::from_secs(15);
        let code = loop {
            let running = child.0.as_mut().unwrap();
            if let Some(status) = running.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() >= deadline {
                let _ = running.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut output = child.0.take().unwrap().wait_with_output().unwrap();
        output.stdout = std::fs::read(sipp.log("stdout")).unwrap_or_default();
        sipp.check(code, &output);
        sipp
    }
}

/// The cumulative successful and failed call counts in SIPp's statistics file (`-trace_stat`:
/// a `;`-separated header line, then one line per dump, the last one at the end of the run).
fn totals(stats: &str) -> (Option<usize>, Option<usize>) {
    let mut lines = stats.lines().filter(|line| !line.trim().is_empty());
    let Some(header) = lines.next() else {
        return (None, None);
    };
    let Some(last) = lines.next_back() else {
        return (None, None);
    };
    let names: Vec<&str> = header.split(';').collect();
    let values: Vec<&str> = last.split(';').collect();
    let field = |name: &str| {
        let index = names.iter().position(|field| *field == name)?;
        values.get(index)?.trim().parse().ok()
    };
    (field("SuccessfulCall(C)"), field("FailedCall(C)"))
}

/// The last `count` lines of `text`, in order.
fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}
