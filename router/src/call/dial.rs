//! `<Dial>` in progress: the legs offered, the first answer winning, and the outcome Twilio
//! reports as `DialCallStatus`.
//!
//! Each leg is one device of a client identity or one SIP destination; the shell starts them
//! and reports what they do. The first leg to answer is bridged and every other one is
//! cancelled; a leg answering after that is hung up. With every leg failed the outcome is
//! `busy` if any party refused (486, 600, 603, a client's `reject`), else `no-answer` if any
//! did not answer (408, 480, the timeout), else `failed`. A dial that reached nobody at all
//! (an offline identity, no registered contact) ends at once as `no-answer`.

use std::time::{Duration, Instant};

use super::{method, Action, DialId};
use crate::config::WebhookMethod;
use crate::sid::CallSid;
use crate::twiml::Dial;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    Offered,
    Ringing,
    Answered,
    Gone,
}

/// A dial in progress.
#[derive(Debug)]
pub(super) struct Dialing {
    id: DialId,
    action: Option<(String, WebhookMethod)>,
    ring_until: Instant,
    time_limit: Duration,
    legs: Vec<(CallSid, LegState)>,
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
    pub(super) fn new(id: DialId, dial: &Dial, action: Option<String>, now: Instant) -> Dialing {
        Dialing {
            id,
            action: action.map(|url| (url, method(dial.method))),
            ring_until: now + dial.timeout,
            time_limit: dial.time_limit,
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

    /// The shell started these legs.
    pub(super) fn legs_started(&mut self, legs: Vec<CallSid>) {
        if legs.is_empty() && self.legs.is_empty() {
            self.finish(DialStatus::NoAnswer, None, Duration::ZERO);
            return;
        }
        self.legs
            .extend(legs.into_iter().map(|leg| (leg, LegState::Offered)));
    }

    /// The deadline passed: nobody answered in time, or the bridge reached `timeLimit`.
    pub(super) fn time_out(&mut self, now: Instant) -> Vec<Action> {
        if let Some(bridged) = &self.bridged {
            let (leg, since) = (bridged.leg.clone(), bridged.since);
            self.set_state(&leg, LegState::Gone);
            self.finish(DialStatus::Completed, Some(leg.clone()), now - since);
            return vec![Action::HangUpLeg(leg)];
        }
        let actions = self.cancel_pending();
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
                    self.set_state(leg, LegState::Ringing);
                }
                if !self.rang {
                    self.rang = true;
                    reaction.ring_caller = true;
                }
            }
            LegEvent::Answered => {
                if self.bridged.is_some() || state == LegState::Gone {
                    // Two answers racing: the first one won.
                    self.set_state(leg, LegState::Gone);
                    reaction.actions.push(Action::HangUpLeg(leg.clone()));
                    return reaction;
                }
                self.set_state(leg, LegState::Answered);
                self.bridged = Some(Bridged {
                    leg: leg.clone(),
                    since: now,
                });
                reaction.answer_caller = true;
                reaction.actions.push(Action::Bridge(leg.clone()));
                reaction.actions.extend(self.cancel_pending());
            }
            LegEvent::Failed(failure) => {
                self.set_state(leg, LegState::Gone);
                match failure {
                    LegFailure::Busy | LegFailure::Rejected => self.refused = true,
                    LegFailure::NoAnswer => self.unanswered = true,
                    LegFailure::Failed => {}
                }
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
                self.set_state(leg, LegState::Gone);
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
    pub(super) fn release(mut self) -> Vec<Action> {
        let mut actions = self.cancel_pending();
        if let Some(bridged) = self.bridged.take() {
            if self.state(&bridged.leg) == Some(LegState::Answered) {
                actions.push(Action::HangUpLeg(bridged.leg));
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
    fn cancel_pending(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for (leg, state) in &mut self.legs {
            if matches!(state, LegState::Offered | LegState::Ringing) {
                *state = LegState::Gone;
                actions.push(Action::CancelLeg(leg.clone()));
            }
        }
        actions
    }

    fn live_legs(&self) -> usize {
        self.legs
            .iter()
            .filter(|(_, state)| *state != LegState::Gone)
            .count()
    }

    fn state(&self, leg: &CallSid) -> Option<LegState> {
        self.legs
            .iter()
            .find(|(sid, _)| sid == leg)
            .map(|(_, state)| *state)
    }

    fn set_state(&mut self, leg: &CallSid, new: LegState) {
        if let Some((_, state)) = self.legs.iter_mut().find(|(sid, _)| sid == leg) {
            *state = new;
        }
    }
}
