//! `<Dial>` in progress: the legs offered, the first answer winning, and the outcome Twilio
//! reports as `DialCallStatus`.
//!
//! Each leg is one device of a client identity or one SIP destination; the shell starts them
//! and reports what they do. The first leg to answer is bridged and every other one is
//! cancelled; a leg answering after that is hung up. With every leg failed the outcome is
//! `busy` if any party refused (486, 600, 603, a client's `reject`), else `no-answer` if any
//! did not answer (408, 480, the timeout), else `failed`. A dial that reached nobody at all
//! (an offline identity, no registered contact) ends at once as `no-answer`.
//!
//! Each leg is a child call with its own progress: when its noun has a `statusCallback`, the
//! events it asks for are reported per leg (`initiated` when the leg starts, `ringing`,
//! `answered`, and `completed` exactly once, when the leg is over for the dial, with
//! `CallStatus` saying how: `completed`, `busy`, `no-answer`, `failed` or `canceled`).

use std::time::{Duration, Instant};

use super::{method, Action, CallStatus, DialId};
use crate::config::WebhookMethod;
use crate::sid::CallSid;
use crate::twiml::{Dial, ProgressEvent};
use crate::webhook::Params;

/// `DialCallStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DialStatus {
    /// A party answered and the bridge ended.
    Completed,
    /// Every party refused.
    Busy,
    /// Nobody answered in time (or nobody was reachable).
    NoAnswer,
    /// The legs failed otherwise.
    Failed,
}

impl DialStatus {
    /// The name in webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            DialStatus::Completed => "completed",
            DialStatus::Busy => "busy",
            DialStatus::NoAnswer => "no-answer",
            DialStatus::Failed => "failed",
        }
    }
}

/// What a dialled leg did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// The party is alerted (180/183, a client's `ringing`).
    Ringing,
    /// The party answered; the shell has its media ready to bridge.
    Answered,
    /// The leg ended before answering.
    Failed(LegFailure),
    /// The answered party hung up (or its connection was lost).
    Ended,
}

/// Why a leg ended unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegFailure {
    /// Busy (486, 600).
    Busy,
    /// Declined (603, a client's `reject`).
    Rejected,
    /// Not answered (408, 480, timeout of the transaction).
    NoAnswer,
    /// Anything else (other 4xx–6xx, transport failure, a device that went away).
    Failed,
}

/// How a dial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    pub status: DialStatus,
    /// The answered leg, if any (`DialCallSid`).
    pub leg: Option<CallSid>,
    /// How long the bridge lasted (`DialCallDuration`).
    pub duration: Duration,
}

/// What the call must do about a leg event.
#[derive(Debug, Default)]
pub(super) struct Reaction {
    /// Send 180 to the caller (first ringing of the dial).
    pub ring_caller: bool,
    /// Answer the caller (a leg answered).
    pub answer_caller: bool,
    /// Leg actions (bridge, cancels, hang-ups).
    pub actions: Vec<Action>,
}

/// A leg the shell started for a dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedLeg {
    /// The leg's own SID (a child of the call).
    pub sid: CallSid,
    /// Which of the dial's nouns it reaches (its index in document order).
    pub noun: usize,
}

/// Where one noun's progress callbacks go, its URL resolved.
#[derive(Debug)]
pub(super) struct Subscription {
    pub url: String,
    pub method: WebhookMethod,
    pub events: Vec<ProgressEvent>,
    /// The `To` of the noun's legs (`client:alice`, a SIP URI, a number).
    pub to: String,
}

/// The progress callbacks a dial's legs send.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// What every leg's callback carries (the parent call, the caller ID, ...).
    pub common: Params,
    /// Per noun, in document order; `None` for a noun without `statusCallback`.
    pub nouns: Vec<Option<Subscription>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    Offered,
    Ringing,
    Answered,
    Gone,
}

#[derive(Debug)]
struct Leg {
    sid: CallSid,
    state: LegState,
    noun: usize,
    answered_at: Option<Instant>,
    /// Callbacks sent about this leg so far (the next one's `SequenceNumber`).
    reported: u32,
}

/// A dial in progress.
#[derive(Debug)]
pub(super) struct Dialing {
    id: DialId,
    action: Option<(String, WebhookMethod)>,
    ring_until: Instant,
    time_limit: Duration,
    progress: Progress,
    legs: Vec<Leg>,
    bridged: Option<Bridged>,
    rang: bool,
    refused: bool,
    unanswered: bool,
    outcome: Option<Outcome>,
}

#[derive(Debug)]
struct Bridged {
    leg: CallSid,
    since: Instant,
}

impl Dialing {
    /// A dial that rings for `dial.timeout` from `now`.
    pub(super) fn new(
        id: DialId,
        dial: &Dial,
        action: Option<String>,
        progress: Progress,
        now: Instant,
    ) -> Dialing {
        Dialing {
            id,
            action: action.map(|url| (url, method(dial.method))),
            ring_until: now + dial.timeout,
            time_limit: dial.time_limit,
            progress,
            legs: Vec::new(),
            bridged: None,
            rang: false,
            refused: false,
            unanswered: false,
            outcome: None,
        }
    }

    pub(super) fn id(&self) -> DialId {
        self.id
    }

    /// The action URL and method.
    pub(super) fn action(&self) -> Option<(&str, WebhookMethod)> {
        self.action
            .as_ref()
            .map(|(url, method)| (url.as_str(), *method))
    }

    /// The ring timeout, or the end of `timeLimit` once bridged.
    pub(super) fn deadline(&self) -> Instant {
        match &self.bridged {
            Some(bridged) => bridged.since + self.time_limit,
            None => self.ring_until,
        }
    }

    /// The shell started these legs; their `initiated` callbacks.
    pub(super) fn legs_started(&mut self, now: Instant, legs: Vec<StartedLeg>) -> Vec<Action> {
        if legs.is_empty() && self.legs.is_empty() {
            self.finish(DialStatus::NoAnswer, None, Duration::ZERO);
            return Vec::new();
        }
        let mut actions = Vec::new();
        for StartedLeg { sid, noun } in legs {
            self.legs.push(Leg {
                sid,
                state: LegState::Offered,
                noun,
                answered_at: None,
                reported: 0,
            });
            let index = self.legs.len() - 1;
            actions.extend(self.report(index, ProgressEvent::Initiated, "initiated", now));
        }
        actions
    }

    /// The deadline passed: nobody answered in time, or the bridge reached `timeLimit`.
    pub(super) fn time_out(&mut self, now: Instant) -> Vec<Action> {
        if let Some(bridged) = &self.bridged {
            let (leg, since) = (bridged.leg.clone(), bridged.since);
            let mut actions = vec![Action::HangUpLeg(leg.clone())];
            actions.extend(self.leave(&leg, CallStatus::Completed, now));
            self.finish(DialStatus::Completed, Some(leg), now - since);
            return actions;
        }
        let actions = self.cancel_pending(now);
        self.finish(DialStatus::NoAnswer, None, Duration::ZERO);
        actions
    }

    /// A leg event.
    pub(super) fn handle_leg(&mut self, now: Instant, leg: &CallSid, event: LegEvent) -> Reaction {
        let mut reaction = Reaction::default();
        let Some(state) = self.state(leg) else {
            if event == LegEvent::Answered {
                reaction.actions.push(Action::HangUpLeg(leg.clone()));
            }
            return reaction;
        };
        if self.outcome.is_some() {
            if event == LegEvent::Answered {
                reaction.actions.push(Action::HangUpLeg(leg.clone()));
            }
            return reaction;
        }
        match event {
            LegEvent::Ringing => {
                if state == LegState::Offered {
                    if let Some(index) = self.set_state(leg, LegState::Ringing) {
                        let report = self.report(
                            index,
                            ProgressEvent::Ringing,
                            CallStatus::Ringing.as_str(),
                            now,
                        );
                        reaction.actions.extend(report);
                    }
                }
                if !self.rang {
                    self.rang = true;
                    reaction.ring_caller = true;
                }
            }
            LegEvent::Answered => {
                if self.bridged.is_some() || state == LegState::Gone {
                    // Two answers racing: the first one won (and the loser was reported
                    // cancelled when the winner's answer cancelled it).
                    reaction.actions.push(Action::HangUpLeg(leg.clone()));
                    reaction
                        .actions
                        .extend(self.leave(leg, CallStatus::Canceled, now));
                    return reaction;
                }
                if let Some(index) = self.set_state(leg, LegState::Answered) {
                    self.legs[index].answered_at = Some(now);
                    let report = self.report(
                        index,
                        ProgressEvent::Answered,
                        CallStatus::InProgress.as_str(),
                        now,
                    );
                    reaction.actions.extend(report);
                }
                self.bridged = Some(Bridged {
                    leg: leg.clone(),
                    since: now,
                });
                reaction.answer_caller = true;
                reaction.actions.push(Action::Bridge(leg.clone()));
                reaction.actions.extend(self.cancel_pending(now));
            }
            LegEvent::Failed(failure) => {
                let status = match failure {
                    LegFailure::Busy | LegFailure::Rejected => {
                        self.refused = true;
                        CallStatus::Busy
                    }
                    LegFailure::NoAnswer => {
                        self.unanswered = true;
                        CallStatus::NoAnswer
                    }
                    LegFailure::Failed => CallStatus::Failed,
                };
                reaction.actions.extend(self.leave(leg, status, now));
                if self.bridged.is_none() && self.live_legs() == 0 {
                    let status = if self.refused {
                        DialStatus::Busy
                    } else if self.unanswered {
                        DialStatus::NoAnswer
                    } else {
                        DialStatus::Failed
                    };
                    // Twilio names the child call of a dial that reached one party even when
                    // it failed; with several legs no single one is "the" dialled call.
                    let only = (self.legs.len() == 1).then(|| leg.clone());
                    self.finish(status, only, Duration::ZERO);
                }
            }
            LegEvent::Ended => {
                reaction
                    .actions
                    .extend(self.leave(leg, CallStatus::Completed, now));
                if let Some(bridged) = &self.bridged {
                    if bridged.leg == *leg {
                        let since = bridged.since;
                        self.finish(DialStatus::Completed, Some(leg.clone()), now - since);
                    }
                }
            }
        }
        reaction
    }

    /// The outcome, once the dial is over (returned once).
    pub(super) fn outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    /// The caller left: every leg goes.
    pub(super) fn release(mut self, now: Instant) -> Vec<Action> {
        let mut actions = self.cancel_pending(now);
        if let Some(bridged) = self.bridged.take() {
            if self.state(&bridged.leg) == Some(LegState::Answered) {
                actions.push(Action::HangUpLeg(bridged.leg.clone()));
                actions.extend(self.leave(&bridged.leg, CallStatus::Completed, now));
            }
        }
        actions
    }

    fn finish(&mut self, status: DialStatus, leg: Option<CallSid>, duration: Duration) {
        if self.outcome.is_none() {
            self.outcome = Some(Outcome {
                status,
                leg,
                duration,
            });
        }
    }

    /// Cancels every leg not yet answered.
    fn cancel_pending(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for index in 0..self.legs.len() {
            if matches!(
                self.legs[index].state,
                LegState::Offered | LegState::Ringing
            ) {
                self.legs[index].state = LegState::Gone;
                actions.push(Action::CancelLeg(self.legs[index].sid.clone()));
                actions.extend(self.report(
                    index,
                    ProgressEvent::Completed,
                    CallStatus::Canceled.as_str(),
                    now,
                ));
            }
        }
        actions
    }

    /// The leg is over for this dial; its `completed` callback (with `status`) the first time.
    fn leave(&mut self, leg: &CallSid, status: CallStatus, now: Instant) -> Option<Action> {
        let index = self.index(leg)?;
        if self.legs[index].state == LegState::Gone {
            return None;
        }
        self.legs[index].state = LegState::Gone;
        self.report(index, ProgressEvent::Completed, status.as_str(), now)
    }

    /// The callback about `event` on leg `index`, when its noun asks for it.
    fn report(
        &mut self,
        index: usize,
        event: ProgressEvent,
        status: &str,
        now: Instant,
    ) -> Option<Action> {
        let leg = &mut self.legs[index];
        let subscription = self.progress.nouns.get(leg.noun)?.as_ref()?;
        if !subscription.events.contains(&event) {
            return None;
        }
        let mut params = self.progress.common.clone();
        params.push("CallSid", leg.sid.as_str());
        params.push("To", subscription.to.as_str());
        params.push("Called", subscription.to.as_str());
        params.push("CallStatus", status);
        params.push("CallbackSource", "call-progress-events");
        params.push("StatusCallbackEvent", event.as_str());
        params.push("SequenceNumber", leg.reported.to_string());
        leg.reported += 1;
        if event == ProgressEvent::Completed {
            let duration = leg.answered_at.map_or(Duration::ZERO, |answered| {
                now.saturating_duration_since(answered)
            });
            params.push("CallDuration", duration.as_secs().to_string());
        }
        Some(Action::StatusCallback {
            url: subscription.url.clone(),
            method: subscription.method,
            params,
        })
    }

    fn live_legs(&self) -> usize {
        self.legs
            .iter()
            .filter(|leg| leg.state != LegState::Gone)
            .count()
    }

    fn index(&self, leg: &CallSid) -> Option<usize> {
        self.legs.iter().position(|candidate| candidate.sid == *leg)
    }

    fn state(&self, leg: &CallSid) -> Option<LegState> {
        self.index(leg).map(|index| self.legs[index].state)
    }

    /// Moves `leg` to `new`; its index, if it is one of this dial's.
    fn set_state(&mut self, leg: &CallSid, new: LegState) -> Option<usize> {
        let index = self.index(leg)?;
        self.legs[index].state = new;
        Some(index)
    }
}
