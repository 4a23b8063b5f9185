//! The per-call state machine: what an inbound call does next, decided from SIP, media,
//! presence and webhook events. Sans-IO: it is driven by `handle_*(now, ..)` calls, drained
//! with [`Call::poll_action`] and [`Call::poll_timeout`], reads no clock and does no I/O. The
//! task in [`crate::engine`] performs the actions and feeds the results back.
//!
//! ```text
//!             new ──► Fetching ──document──► Executing verb by verb ──last verb──► Ended
//!                        ▲                    │   Say/Play  → Playing ─┐
//!                        │ action/Redirect    │   Pause     → Pausing ─┤ done: next verb
//!                        └────────────────────┤   Gather    → Gathering┤
//!                                             │   Dial      → Dialing ─► Bridged ─┘
//!                                             └── Hangup/Reject → Ended
//!  caller CANCEL/BYE at any point: every leg, prompt and fetch is released → Ended
//! ```
//!
//! Answering follows Twilio (PRODUCT.md): the caller is answered when its instructions start
//! to execute, except by `<Reject>` (486/603, never answered), `<Redirect>` (only fetches) and
//! `<Dial answerOnBridge="true">`, which rings the caller (180) and answers when the dialled
//! party answers.

mod dial;
mod gather;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::WebhookMethod;
use crate::sid::CallSid;
use crate::twiml::{self, HttpMethod, Loop, ProgressEvent, Verb};
use crate::webhook::{loggable, Params};

pub use dial::{DialStatus, LegEvent, LegFailure, StartedLeg};

/// Consecutive documents fetched by `<Redirect>` without any other verb running in between;
/// one more is an application error (a redirect loop).
pub const MAX_REDIRECTS: u32 = 10;

/// The Twilio REST API version webhook requests name.
pub const API_VERSION: &str = "2010-04-01";

/// Twilio's error code for a document that could not be fetched.
pub const ERROR_HTTP_RETRIEVAL: u16 = 11200;
/// Twilio's error code for a document that is not valid TwiML.
pub const ERROR_DOCUMENT_PARSE: u16 = 12100;
/// Twilio's error code for an invalid verb or attribute (the fallback request carries it).
pub const ERROR_INVALID_TWIML: u16 = 12200;
/// Our code for a redirect loop (Twilio has none; it is an application error all the same).
pub const ERROR_REDIRECT_LOOP: u16 = 12400;

/// What the call is and where its instructions come from.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The call's SID.
    pub sid: CallSid,
    /// The account SID (`AccountSid` in webhooks).
    pub account_sid: String,
    /// The caller, as webhooks show it (`From`).
    pub from: String,
    /// The dialled party, as webhooks show it (`To`).
    pub to: String,
    /// Where the first instructions come from.
    pub start: Start,
    /// Receives call status callbacks, if configured.
    pub status_callback: Option<String>,
}

/// How a call gets its first instructions.
#[derive(Debug, Clone)]
pub enum Start {
    /// From the application's voice URL.
    Webhook {
        /// The voice URL (absolute).
        url: String,
        /// Its method.
        method: WebhookMethod,
        /// Fetched once if a document cannot be fetched or executed.
        fallback_url: Option<String>,
    },
    /// A document known in advance (the bundled demo application), resolved against `base`.
    Document {
        /// The instructions.
        verbs: Vec<Verb>,
        /// The URL relative references in `verbs` resolve against.
        base: String,
    },
}

/// Identifies one webhook fetch; a result for another id is stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchId(pub u64);

/// Identifies one prompt; a completion for another id is stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromptId(pub u64);

/// Identifies one `<Dial>`; leg events of another dial are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialId(pub u64);

/// Audio to stream to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    /// An audio URL (absolute), through the prompt cache.
    Url(String),
    /// Text to speech.
    Say {
        /// The text.
        text: String,
        /// Twilio's voice name.
        voice: String,
        /// The language tag.
        language: String,
    },
    /// Ringback tone, while a `<Dial>` rings an answered caller.
    Ringback,
}

/// Something the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Request instructions. A newer fetch supersedes an older one.
    Fetch {
        /// Echo it in [`Call::handle_document`].
        id: FetchId,
        /// Absolute URL.
        url: String,
        /// GET or POST.
        method: WebhookMethod,
        /// Twilio's request parameters.
        params: Params,
    },
    /// Send 180 Ringing to the caller.
    Ring,
    /// Send 200 OK with our SDP answer to the caller.
    Answer,
    /// Refuse the unanswered call with this final response.
    Refuse {
        /// The SIP status code (486, 603, 500...).
        status: u16,
        /// The reason phrase.
        reason: &'static str,
    },
    /// Send BYE to the answered caller.
    HangUp,
    /// Stream audio to the caller (stopping any prompt playing).
    Play {
        /// Echo it in [`Call::handle_prompt_finished`].
        id: PromptId,
        /// What to play.
        audio: Audio,
        /// How many times.
        loops: Loop,
    },
    /// Stop the prompt playing, if any (no completion is expected for it).
    StopPlay,
    /// Offer the call to `targets`; answer with [`Call::handle_dial_started`].
    Dial {
        /// Echo it in every leg event.
        id: DialId,
        /// The parties to ring, one per noun in document order (each may become several
        /// legs, one per device).
        targets: Vec<twiml::Target>,
        /// The caller ID the legs present.
        caller_id: String,
        /// Custom caller-facing `To` shown to clients, as Twilio does: the dialled number.
        to: String,
    },
    /// Withdraw an offer that has not been answered (CANCEL / `cancel`).
    CancelLeg(CallSid),
    /// End an answered leg (BYE / `hangup`).
    HangUpLeg(CallSid),
    /// Relay media between the caller and this answered leg.
    Bridge(CallSid),
    /// Send a status callback in the background.
    StatusCallback {
        /// The callback URL.
        url: String,
        /// GET or POST.
        method: WebhookMethod,
        /// Parameters, without `Timestamp` (wall-clock time is the shell's).
        params: Params,
    },
    /// The call is over; release everything. Always the last action.
    Ended(CallStatus),
}

/// The call's status as Twilio names it (`CallStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Received, instructions not yet running.
    Ringing,
    /// Answered.
    InProgress,
    /// Answered and ended.
    Completed,
    /// Refused busy.
    Busy,
    /// Not answered.
    NoAnswer,
    /// The caller hung up before it was answered.
    Canceled,
    /// Ended by an error (application, network or internal).
    Failed,
}

impl CallStatus {
    /// The name in webhooks and the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
            CallStatus::Failed => "failed",
        }
    }

    /// Whether the call is over.
    pub fn is_final(self) -> bool {
        !matches!(self, CallStatus::Ringing | CallStatus::InProgress)
    }
}

/// What the caller's side did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerEvent {
    /// CANCEL before a final response (the endpoint already sent 487).
    Cancelled,
    /// BYE (the shell answered it 200).
    Bye,
    /// No ACK for our 200 (Timer H), or the transport failed: the caller is gone.
    Lost,
}

/// Why a fetch failed, for the log, the fallback request and the call's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// Twilio's error code (`ErrorCode` of the fallback request).
    pub code: u16,
    /// What went wrong, for the log.
    pub message: String,
}

/// A fetched document: its body and the URL it finally came from (after redirects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The TwiML text.
    pub body: String,
    /// The URL relative references resolve against.
    pub url: String,
}

/// The per-call state machine.
#[derive(Debug)]
pub struct Call {
    info: CallInfo,
    caller: Caller,
    status: CallStatus,
    verbs: VecDeque<Verb>,
    /// The URL of the running document (relative URLs resolve against it).
    base: String,
    activity: Activity,
    fallback_url: Option<String>,
    fallback_used: bool,
    redirects: u32,
    next_id: u64,
    sequence: u32,
    actions: VecDeque<Action>,
    started_at: Instant,
    answered_at: Option<Instant>,
    ended_at: Option<Instant>,
    dial_outcome: Option<dial::Outcome>,
}

/// Where the caller's INVITE stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// No final response yet; `rung` once 180 went out.
    Offered { rung: bool },
    /// 200 OK sent.
    Answered,
    /// Hung up, cancelled, refused or lost.
    Gone,
}

/// What the call is doing now.
#[derive(Debug)]
enum Activity {
    /// Between verbs (transient: [`Call::run`] moves on at once).
    Idle,
    /// Waiting for a document.
    Fetching {
        id: FetchId,
        url: String,
        is_fallback: bool,
    },
    /// Streaming a `<Say>`/`<Play>`.
    Playing { id: PromptId },
    /// Silent until the deadline.
    Pausing { until: Instant },
    /// Collecting digits.
    Gathering(gather::Gathering),
    /// Ringing and then bridged to a `<Dial>`'s parties.
    Dialing(dial::Dialing),
    /// Over.
    Ended,
}

impl Call {
    /// A new call. Its first actions (fetch or first verbs, status callbacks) are ready at once.
    pub fn new(now: Instant, info: CallInfo) -> Call {
        let mut call = Call {
            caller: Caller::Offered { rung: false },
            status: CallStatus::Ringing,
            verbs: VecDeque::new(),
            base: String::new(),
            activity: Activity::Idle,
            fallback_url: None,
            fallback_used: false,
            redirects: 0,
            next_id: 0,
            sequence: 0,
            actions: VecDeque::new(),
            started_at: now,
            answered_at: None,
            ended_at: None,
            dial_outcome: None,
            info,
        };
        call.status_callback(ProgressEvent::Initiated);
        call.status_callback(ProgressEvent::Ringing);
        match call.info.start.clone() {
            Start::Webhook {
                url,
                method,
                fallback_url,
            } => {
                call.fallback_url = fallback_url;
                let params = call.base_params();
                call.fetch(url, method, params, false);
            }
            Start::Document { verbs, base } => {
                call.base = base;
                call.verbs = verbs.into();
                call.run(now);
            }
        }
        call
    }

    /// The call's status now.
    pub fn status(&self) -> CallStatus {
        self.status
    }

    /// Whether a `<Gather>` collects digits now: the only time the shell needs to read the
    /// caller's DTMF (digits pressed at any other time are ignored, as by Twilio).
    pub fn is_gathering(&self) -> bool {
        matches!(self.activity, Activity::Gathering(_))
    }

    /// When the call was created, answered and ended.
    pub fn times(&self) -> (Instant, Option<Instant>, Option<Instant>) {
        (self.started_at, self.answered_at, self.ended_at)
    }

    /// The next action for the shell.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Call::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.activity {
            Activity::Pausing { until } => Some(*until),
            Activity::Gathering(gathering) => gathering.deadline(),
            Activity::Dialing(dialing) => Some(dialing.deadline()),
            _ => None,
        }
    }

    /// Time passed: a pause ended, a gather or dial timed out, a bridge reached its limit.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.activity {
            Activity::Pausing { until } if *until <= now => {
                self.activity = Activity::Idle;
                self.run(now);
            }
            Activity::Gathering(gathering) if gathering.deadline().is_some_and(|d| d <= now) => {
                match gathering.time_out() {
                    gather::Timeout::PauseOver => self.next_gather_prompt(now),
                    gather::Timeout::Finished(result) => self.finish_gather(now, result),
                }
            }
            Activity::Dialing(dialing) if dialing.deadline() <= now => {
                let actions = dialing.time_out(now);
                self.actions.extend(actions);
                self.settle_dial(now);
            }
            _ => {}
        }
    }

    /// The result of [`Action::Fetch`].
    pub fn handle_document(
        &mut self,
        now: Instant,
        id: FetchId,
        result: Result<Document, FetchFailure>,
    ) {
        let Activity::Fetching {
            id: pending,
            url,
            is_fallback,
        } = &self.activity
        else {
            return;
        };
        if *pending != id {
            return;
        }
        let (url, is_fallback) = (url.clone(), *is_fallback);
        let failure = match result {
            Err(failure) => failure,
            Ok(document) => match twiml::parse(document.body.as_bytes()) {
                Ok(response) => {
                    for warning in &response.warnings {
                        tracing::warn!(
                            call_sid = %self.info.sid,
                            url = %loggable(&document.url),
                            "{warning}"
                        );
                    }
                    self.base = document.url;
                    self.verbs = response.verbs.into();
                    self.activity = Activity::Idle;
                    self.run(now);
                    return;
                }
                Err(error) => FetchFailure {
                    code: match error {
                        twiml::TwimlError::BadAttribute { .. }
                        | twiml::TwimlError::UnknownVerb { .. } => ERROR_INVALID_TWIML,
                        _ => ERROR_DOCUMENT_PARSE,
                    },
                    message: error.to_string(),
                },
            },
        };
        tracing::warn!(
            call_sid = %self.info.sid,
            url = %loggable(&url),
            code = failure.code,
            error = %failure.message,
            "call instructions unusable"
        );
        self.application_error(now, &url, is_fallback, failure);
    }

    /// The caller's side changed.
    pub fn handle_caller(&mut self, now: Instant, event: CallerEvent) {
        if matches!(self.caller, Caller::Gone) {
            return;
        }
        let answered = matches!(self.caller, Caller::Answered);
        self.caller = Caller::Gone;
        tracing::info!(call_sid = %self.info.sid, ?event, "caller left");
        let status = if answered {
            CallStatus::Completed
        } else {
            CallStatus::Canceled
        };
        self.end(now, status);
    }

    /// A prompt ended (played out, or failed to fetch: Twilio then moves on to the next verb,
    /// and so do we, after logging why).
    pub fn handle_prompt_finished(&mut self, now: Instant, id: PromptId, error: Option<String>) {
        if let Some(error) = error {
            tracing::warn!(call_sid = %self.info.sid, %error, "prompt could not be played");
        }
        match &mut self.activity {
            Activity::Playing { id: playing } if *playing == id => {
                self.activity = Activity::Idle;
                self.run(now);
            }
            Activity::Gathering(gathering) if gathering.prompt_finished(id) => {
                self.next_gather_prompt(now);
            }
            _ => {}
        }
    }

    /// A DTMF digit from the caller (RFC 4733 event or SIP INFO). Ignored unless gathering.
    pub fn handle_digit(&mut self, now: Instant, digit: char) {
        let Activity::Gathering(gathering) = &mut self.activity else {
            return;
        };
        let (interrupted, result) = gathering.digit(digit, now);
        if interrupted {
            self.actions.push_back(Action::StopPlay);
        }
        if let Some(result) = result {
            self.finish_gather(now, result);
        }
    }

    /// The legs a [`Action::Dial`] started (one per device or SIP target reached). None at all
    /// ends the dial at once.
    pub fn handle_dial_started(&mut self, now: Instant, id: DialId, legs: Vec<StartedLeg>) {
        let Activity::Dialing(dialing) = &mut self.activity else {
            return;
        };
        if dialing.id() != id {
            return;
        }
        let reports = dialing.legs_started(now, legs);
        self.actions.extend(reports);
        self.settle_dial(now);
    }

    /// Something happened on a dialled leg.
    pub fn handle_leg(&mut self, now: Instant, id: DialId, leg: &CallSid, event: LegEvent) {
        let caller_offered = matches!(self.caller, Caller::Offered { .. });
        let Activity::Dialing(dialing) = &mut self.activity else {
            // A leg of a dial that is over: make sure it does not linger.
            if matches!(event, LegEvent::Answered) {
                self.actions.push_back(Action::HangUpLeg(leg.clone()));
            }
            return;
        };
        if dialing.id() != id {
            if matches!(event, LegEvent::Answered) {
                self.actions.push_back(Action::HangUpLeg(leg.clone()));
            }
            return;
        }
        let reaction = dialing.handle_leg(now, leg, event);
        if reaction.ring_caller && caller_offered {
            self.ring();
        }
        if reaction.answer_caller {
            // Stop the ringback before the bridge takes over the caller's media.
            if matches!(self.caller, Caller::Answered) {
                self.actions.push_back(Action::StopPlay);
            }
            self.answer(now);
        }
        self.actions.extend(reaction.actions);
        self.settle_dial(now);
    }

    /// The shell could not carry out the call's media or signalling (no RTP port, a socket
    /// error): end the call as failed.
    pub fn handle_internal_error(&mut self, now: Instant, error: &str) {
        tracing::error!(call_sid = %self.info.sid, %error, "call failed inside Tandem");
        match self.caller {
            Caller::Offered { .. } => {
                self.caller = Caller::Gone;
                self.actions.push_back(Action::Refuse {
                    status: 500,
                    reason: "Server Internal Error",
                });
            }
            Caller::Answered => {
                self.caller = Caller::Gone;
                self.actions.push_back(Action::HangUp);
            }
            Caller::Gone => {}
        }
        self.end(now, CallStatus::Failed);
    }

    /// Executes verbs until one has to wait for something.
    fn run(&mut self, now: Instant) {
        while matches!(self.activity, Activity::Idle) {
            let Some(verb) = self.verbs.pop_front() else {
                // Twilio ends the call when the instructions run out.
                self.hang_up(now);
                return;
            };
            if !matches!(verb, Verb::Redirect(_)) {
                self.redirects = 0;
            }
            match verb {
                Verb::Say(say) => {
                    self.answer(now);
                    let id = self.play(
                        Audio::Say {
                            text: say.text,
                            voice: say.voice,
                            language: say.language,
                        },
                        say.loop_count,
                    );
                    self.activity = Activity::Playing { id };
                }
                Verb::Play(play) => {
                    self.answer(now);
                    let audio = Audio::Url(self.resolve(play.url.as_str()));
                    let id = self.play(audio, play.loop_count);
                    self.activity = Activity::Playing { id };
                }
                Verb::Pause(pause) => {
                    self.answer(now);
                    self.activity = Activity::Pausing {
                        until: now + pause.length,
                    };
                }
                Verb::Gather(gather) => {
                    self.answer(now);
                    let action = gather.action.as_ref().map(|url| self.resolve(url.as_str()));
                    self.activity = Activity::Gathering(gather::Gathering::new(gather, action));
                    self.next_gather_prompt(now);
                }
                Verb::Dial(dial) => self.start_dial(now, dial),
                Verb::Redirect(redirect) => {
                    self.redirects += 1;
                    if self.redirects > MAX_REDIRECTS {
                        let url = self.resolve(redirect.url.as_str());
                        self.application_error(
                            now,
                            &url,
                            true,
                            FetchFailure {
                                code: ERROR_REDIRECT_LOOP,
                                message: format!("more than {MAX_REDIRECTS} redirects in a row"),
                            },
                        );
                        return;
                    }
                    let url = self.resolve(redirect.url.as_str());
                    let params = self.base_params();
                    self.fetch(url, method(redirect.method), params, false);
                }
                Verb::Hangup(_) => {
                    self.answer(now);
                    self.hang_up(now);
                }
                Verb::Reject(reject) => {
                    if matches!(self.caller, Caller::Offered { .. }) {
                        let (status, reason, call_status) = match reject.reason {
                            twiml::RejectReason::Busy => (486, "Busy Here", CallStatus::Busy),
                            twiml::RejectReason::Rejected => (603, "Decline", CallStatus::Busy),
                        };
                        self.caller = Caller::Gone;
                        self.actions.push_back(Action::Refuse { status, reason });
                        self.end(now, call_status);
                    } else {
                        // Twilio: <Reject> after the call was answered hangs up.
                        self.hang_up(now);
                    }
                }
            }
        }
    }

    fn start_dial(&mut self, now: Instant, dial: twiml::Dial) {
        if !dial.answer_on_bridge {
            self.answer(now);
        }
        let id = DialId(self.next_id());
        let action = dial.action.as_ref().map(|url| self.resolve(url.as_str()));
        let caller_id = dial
            .caller_id
            .clone()
            .unwrap_or_else(|| self.info.from.clone());
        let progress = self.leg_progress(&dial, &caller_id);
        self.actions.push_back(Action::Dial {
            id,
            targets: dial.nouns.iter().map(|noun| noun.target.clone()).collect(),
            caller_id,
            to: self.info.to.clone(),
        });
        if matches!(self.caller, Caller::Answered) {
            // Twilio plays ringback to an answered caller while the dial rings; it stops when
            // the dial ends, so its completion is never awaited.
            self.play(Audio::Ringback, Loop::FOREVER);
        }
        self.activity = Activity::Dialing(dial::Dialing::new(id, &dial, action, progress, now));
    }

    /// Where the dial's legs report their progress (nothing to prepare when no noun asks).
    fn leg_progress(&self, dial: &twiml::Dial, caller_id: &str) -> dial::Progress {
        if dial.nouns.iter().all(|noun| noun.status_callback.is_none()) {
            return dial::Progress::default();
        }
        let mut common = Params::new();
        common.push("ParentCallSid", self.info.sid.as_str());
        common.push("AccountSid", self.info.account_sid.as_str());
        common.push("From", caller_id);
        common.push("Caller", caller_id);
        common.push("Direction", "outbound-dial");
        common.push("ApiVersion", API_VERSION);
        let nouns = dial
            .nouns
            .iter()
            .map(|noun| {
                noun.status_callback
                    .as_ref()
                    .map(|callback| dial::Subscription {
                        url: self.resolve(callback.url.as_str()),
                        method: method(callback.method),
                        events: callback.events.clone(),
                        to: noun.target.to_string(),
                    })
            })
            .collect();
        dial::Progress { common, nouns }
    }

    /// Applies what a dial's state implies: its end continues the call.
    fn settle_dial(&mut self, now: Instant) {
        let Activity::Dialing(dialing) = &mut self.activity else {
            return;
        };
        let Some(outcome) = dialing.outcome() else {
            return;
        };
        let action_url = dialing
            .action()
            .map(|(url, method)| (url.to_owned(), method));
        self.activity = Activity::Idle;
        if matches!(self.caller, Caller::Answered) {
            self.actions.push_back(Action::StopPlay);
        }
        tracing::info!(
            call_sid = %self.info.sid,
            status = outcome.status.as_str(),
            "dial ended"
        );
        self.dial_outcome = Some(outcome.clone());
        match action_url {
            Some((url, method)) => {
                let mut params = self.base_params();
                params.push("DialCallStatus", outcome.status.as_str());
                if let Some(sid) = &outcome.leg {
                    params.push("DialCallSid", sid.as_str());
                }
                params.push("DialCallDuration", outcome.duration.as_secs().to_string());
                // With answerOnBridge and nobody answering, the caller is still unanswered:
                // the action's instructions decide (answered when they start, unless they
                // <Reject>).
                self.fetch(url, method, params, false);
            }
            None => self.run(now),
        }
    }

    fn finish_gather(&mut self, now: Instant, result: gather::GatherResult) {
        let Activity::Gathering(gathering) = &self.activity else {
            return;
        };
        let action = gathering.action();
        self.activity = Activity::Idle;
        self.actions.push_back(Action::StopPlay);
        match (result, action) {
            (gather::GatherResult::Digits(digits), Some((url, method))) => {
                let mut params = self.base_params();
                params.push("Digits", digits);
                self.fetch(url, method, params, false);
            }
            // No digits (Twilio falls through), or no action: the next verb.
            _ => self.run(now),
        }
    }

    fn next_gather_prompt(&mut self, now: Instant) {
        let Activity::Gathering(gathering) = &mut self.activity else {
            return;
        };
        let Some(prompt) = gathering.take_prompt(now) else {
            return;
        };
        let (audio, loops) = match prompt {
            twiml::Prompt::Say(say) => (
                Audio::Say {
                    text: say.text,
                    voice: say.voice,
                    language: say.language,
                },
                say.loop_count,
            ),
            twiml::Prompt::Play(play) => {
                (Audio::Url(self.resolve(play.url.as_str())), play.loop_count)
            }
            // Pauses become the gathering's own deadline and never reach here.
            twiml::Prompt::Pause(_) => return,
        };
        let id = self.play(audio, loops);
        if let Activity::Gathering(gathering) = &mut self.activity {
            gathering.playing(id);
        }
    }

    /// A document could not be fetched or used: the fallback URL once, else the call fails.
    fn application_error(
        &mut self,
        now: Instant,
        url: &str,
        is_fallback: bool,
        failure: FetchFailure,
    ) {
        if !is_fallback && !self.fallback_used {
            if let Some(fallback) = self.fallback_url.clone() {
                self.fallback_used = true;
                let mut params = self.base_params();
                params.push("ErrorCode", failure.code.to_string());
                params.push("ErrorUrl", url);
                self.fetch(fallback, WebhookMethod::Post, params, true);
                return;
            }
        }
        tracing::error!(
            call_sid = %self.info.sid,
            url = %loggable(url),
            code = failure.code,
            error = %failure.message,
            "application error: ending the call"
        );
        self.activity = Activity::Idle;
        match self.caller {
            Caller::Offered { .. } => {
                self.caller = Caller::Gone;
                self.actions.push_back(Action::Refuse {
                    status: 500,
                    reason: "Application Error",
                });
            }
            Caller::Answered => {
                self.caller = Caller::Gone;
                self.actions.push_back(Action::HangUp);
            }
            Caller::Gone => {}
        }
        self.end(now, CallStatus::Failed);
    }

    fn fetch(&mut self, url: String, method: WebhookMethod, params: Params, is_fallback: bool) {
        let id = FetchId(self.next_id());
        self.actions.push_back(Action::Fetch {
            id,
            url: url.clone(),
            method,
            params,
        });
        self.activity = Activity::Fetching {
            id,
            url,
            is_fallback,
        };
    }

    fn play(&mut self, audio: Audio, loops: Loop) -> PromptId {
        let id = PromptId(self.next_id());
        self.actions.push_back(Action::Play { id, audio, loops });
        id
    }

    fn ring(&mut self) {
        if let Caller::Offered { rung: false } = self.caller {
            self.caller = Caller::Offered { rung: true };
            self.actions.push_back(Action::Ring);
        }
    }

    fn answer(&mut self, now: Instant) {
        if let Caller::Offered { .. } = self.caller {
            self.caller = Caller::Answered;
            self.status = CallStatus::InProgress;
            self.answered_at = Some(now);
            self.actions.push_back(Action::Answer);
            self.status_callback(ProgressEvent::Answered);
        }
    }

    fn hang_up(&mut self, now: Instant) {
        match self.caller {
            Caller::Answered => {
                self.caller = Caller::Gone;
                self.actions.push_back(Action::HangUp);
                self.end(now, CallStatus::Completed);
            }
            Caller::Offered { .. } => {
                // Only reachable with an empty document before any answer: answer-and-hang-up
                // would bill a call nobody heard, so end it the way <Reject> would not: 480.
                self.caller = Caller::Gone;
                self.actions.push_back(Action::Refuse {
                    status: 480,
                    reason: "Temporarily Unavailable",
                });
                self.end(now, CallStatus::NoAnswer);
            }
            Caller::Gone => self.end(now, CallStatus::Completed),
        }
    }

    /// Releases everything and reports the end; idempotent.
    fn end(&mut self, now: Instant, status: CallStatus) {
        if matches!(self.activity, Activity::Ended) {
            return;
        }
        match std::mem::replace(&mut self.activity, Activity::Ended) {
            Activity::Dialing(dialing) => self.actions.extend(dialing.release(now)),
            Activity::Playing { .. } | Activity::Gathering(_) => {
                self.actions.push_back(Action::StopPlay)
            }
            _ => {}
        }
        self.verbs.clear();
        self.status = status;
        self.ended_at = Some(now);
        self.status_callback(ProgressEvent::Completed);
        self.actions.push_back(Action::Ended(status));
    }

    /// The number's status callback about `event` (every event is reported).
    fn status_callback(&mut self, event: ProgressEvent) {
        let Some(url) = self.info.status_callback.clone() else {
            return;
        };
        self.sequence += 1;
        let mut params = self.base_params();
        params.push("CallbackSource", "call-progress-events");
        params.push("StatusCallbackEvent", event.as_str());
        params.push("SequenceNumber", (self.sequence - 1).to_string());
        if event == ProgressEvent::Completed {
            let duration = match (self.answered_at, self.ended_at) {
                (Some(answered), Some(ended)) => ended.saturating_duration_since(answered),
                _ => Duration::ZERO,
            };
            params.push("CallDuration", duration.as_secs().to_string());
        }
        self.actions.push_back(Action::StatusCallback {
            url,
            method: WebhookMethod::Post,
            params,
        });
    }

    /// Twilio's parameters of every request about this call.
    fn base_params(&self) -> Params {
        let mut params = Params::new();
        params.push("CallSid", self.info.sid.as_str());
        params.push("AccountSid", self.info.account_sid.as_str());
        params.push("From", self.info.from.as_str());
        params.push("To", self.info.to.as_str());
        params.push("Caller", self.info.from.as_str());
        params.push("Called", self.info.to.as_str());
        params.push("CallStatus", self.status.as_str());
        params.push("Direction", "inbound");
        params.push("ApiVersion", API_VERSION);
        params
    }

    /// Resolves a URL from the document against the document's URL (RFC 3986 §5).
    fn resolve(&self, reference: &str) -> String {
        match url::Url::parse(&self.base).and_then(|base| base.join(reference)) {
            Ok(url) => url.into(),
            Err(_) => reference.to_owned(),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The webhook method for a TwiML `method` attribute.
fn method(method: HttpMethod) -> WebhookMethod {
    match method {
        HttpMethod::Get => WebhookMethod::Get,
        HttpMethod::Post => WebhookMethod::Post,
    }
}
