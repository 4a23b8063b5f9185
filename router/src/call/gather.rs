//! `<Gather>` in progress: its nested prompts, the digits collected, and when it gives up.
//!
//! Twilio's rules: the prompts play in order; the first digit stops the prompt playing and
//! skips the rest (barge-in); `timeout` counts from the end of the prompts and again after
//! each digit; `numDigits` digits or the `finishOnKey` end it at once (the key itself is not
//! part of `Digits`); a timeout with digits submits them, a timeout or a bare `finishOnKey`
//! without any falls through to the next verb.

use std::collections::VecDeque;
use std::time::Instant;

use super::{method, PromptId};
use crate::config::WebhookMethod;
use crate::twiml::{Gather, Prompt};

/// How a gather ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum GatherResult {
    /// Digits to submit to the action URL.
    Digits(String),
    /// Nothing entered: fall through to the next verb.
    Nothing,
}

/// What a deadline meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Timeout {
    /// A nested `<Pause>` is over: play the next prompt.
    PauseOver,
    /// The wait for (more) digits is over.
    Finished(GatherResult),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first prompt.
    Starting,
    /// A nested prompt is playing.
    Prompting(PromptId),
    /// A nested pause lasts until then.
    Pausing(Instant),
    /// Waiting for a digit until then.
    Waiting(Instant),
}

/// A gather in progress.
#[derive(Debug)]
pub(super) struct Gathering {
    gather: Gather,
    action: Option<String>,
    prompts: VecDeque<Prompt>,
    phase: Phase,
    digits: String,
}

impl Gathering {
    /// Starts gathering; `action` is the resolved action URL.
    pub(super) fn new(mut gather: Gather, action: Option<String>) -> Gathering {
        let prompts = std::mem::take(&mut gather.prompts).into();
        Gathering {
            gather,
            action,
            prompts,
            phase: Phase::Starting,
            digits: String::new(),
        }
    }

    /// The action URL and its method.
    pub(super) fn action(&self) -> Option<(String, WebhookMethod)> {
        self.action
            .clone()
            .map(|url| (url, method(self.gather.method)))
    }

    /// The next prompt to play (`Say` or `Play`); `None` when the gather now waits (a pause,
    /// or the digit timeout after the last prompt or after barge-in).
    pub(super) fn take_prompt(&mut self, now: Instant) -> Option<Prompt> {
        if self.digits.is_empty() {
            match self.prompts.pop_front() {
                Some(Prompt::Pause(pause)) => {
                    self.phase = Phase::Pausing(now + pause.length);
                    return None;
                }
                Some(prompt) => return Some(prompt),
                None => {}
            }
        }
        self.prompts.clear();
        self.phase = Phase::Waiting(now + self.gather.timeout);
        None
    }

    /// The prompt just started.
    pub(super) fn playing(&mut self, id: PromptId) {
        self.phase = Phase::Prompting(id);
    }

    /// A prompt ended; true if it was the current one (play the next).
    pub(super) fn prompt_finished(&self, id: PromptId) -> bool {
        self.phase == Phase::Prompting(id)
    }

    /// When the current pause or wait ends.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Pausing(at) | Phase::Waiting(at) => Some(at),
            Phase::Starting | Phase::Prompting(_) => None,
        }
    }

    /// The deadline passed.
    pub(super) fn time_out(&self) -> Timeout {
        match self.phase {
            Phase::Pausing(_) => Timeout::PauseOver,
            _ => Timeout::Finished(self.result()),
        }
    }

    /// A digit: whether it interrupted a prompt, and the result if it ended the gather.
    pub(super) fn digit(&mut self, digit: char, now: Instant) -> (bool, Option<GatherResult>) {
        let interrupted = matches!(self.phase, Phase::Prompting(_));
        if Some(digit) == self.gather.finish_on_key {
            return (interrupted, Some(self.result()));
        }
        if self.digits.len() < Gather::MAX_DIGITS as usize {
            self.digits.push(digit);
        }
        if let Some(wanted) = self.gather.num_digits {
            if self.digits.len() >= wanted.get() as usize {
                return (interrupted, Some(self.result()));
            }
        }
        // Barge-in: the remaining prompts are skipped and the timeout restarts.
        self.prompts.clear();
        self.phase = Phase::Waiting(now + self.gather.timeout);
        (interrupted, None)
    }

    fn result(&self) -> GatherResult {
        if self.digits.is_empty() {
            GatherResult::Nothing
        } else {
            GatherResult::Digits(self.digits.clone())
        }
    }
}
