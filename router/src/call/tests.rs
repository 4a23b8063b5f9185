//! Scenario tests of the call state machine with a virtual clock: every flow of the router
//! issue, driven event by event, checking the exact actions the shell would perform.

use super::*;

const VOICE: &str = "http://app.test/voice";

struct Harness {
    call: Call,
    start: Instant,
}

fn info(start: Start, status_callback: bool) -> CallInfo {
    CallInfo {
        sid: CallSid::parse("CA0123456789abcdef0123456789abcdef").unwrap(),
        account_sid: "AC00000000000000000000000000000000".into(),
        from: "+15550001".into(),
        to: "+15550100".into(),
        start,
        status_callback: status_callback.then(|| "http://app.test/status".to_owned()),
    }
}

fn webhook(fallback: bool) -> Start {
    Start::Webhook {
        url: VOICE.into(),
        method: WebhookMethod::Post,
        fallback_url: fallback.then(|| "http://app.test/fallback".to_owned()),
    }
}

impl Harness {
    fn new(start: Start) -> Harness {
        let now = Instant::now();
        Harness {
            call: Call::new(now, info(start, false)),
            start: now,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.call.poll_action()).collect()
    }

    /// Expects exactly one fetch among the pending actions; returns its id, URL and params.
    fn fetch(&mut self) -> (FetchId, String, Params) {
        let actions = self.actions();
        let fetches: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Fetch {
                    id, url, params, ..
                } => Some((*id, url.clone(), params.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(fetches.len(), 1, "{actions:?}");
        fetches.into_iter().next().unwrap()
    }

    fn document(&mut self, ms: u64, twiml: &str) -> Vec<Action> {
        let (id, url, _) = self.fetch();
        self.call.handle_document(
            self.at(ms),
            id,
            Ok(Document {
                body: twiml.into(),
                url,
            }),
        );
        self.actions()
    }
}

fn prompt_id(actions: &[Action]) -> PromptId {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Play { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Play in {actions:?}"))
}

fn dial_id(actions: &[Action]) -> DialId {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Dial { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Dial in {actions:?}"))
}

fn leg(n: u8) -> CallSid {
    CallSid::parse(&format!("CA{:032x}", n)).unwrap()
}

/// Legs started for the dial's first noun.
fn started(legs: &[CallSid]) -> Vec<StartedLeg> {
    legs.iter()
        .map(|sid| StartedLeg {
            sid: sid.clone(),
            noun: 0,
        })
        .collect()
}

/// One leg progress callback: (URL, method, leg, event, sequence number, status, duration).
type LegCallback = (
    String,
    WebhookMethod,
    String,
    String,
    String,
    String,
    Option<String>,
);

/// The leg progress callbacks among `actions`.
fn leg_callbacks(actions: &[Action]) -> Vec<LegCallback> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::StatusCallback {
                url,
                method,
                params,
            } => {
                let get = |name| {
                    params
                        .get(name)
                        .unwrap_or_else(|| panic!("{name}"))
                        .to_owned()
                };
                assert_eq!(get("Direction"), "outbound-dial");
                assert_eq!(get("ParentCallSid"), "CA0123456789abcdef0123456789abcdef");
                assert_eq!(get("CallbackSource"), "call-progress-events");
                Some((
                    url.clone(),
                    *method,
                    get("CallSid"),
                    get("StatusCallbackEvent"),
                    get("SequenceNumber"),
                    get("CallStatus"),
                    params.get("CallDuration").map(str::to_owned),
                ))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_request_carries_twilios_parameters() {
    let mut h = Harness::new(webhook(false));
    let (_, url, params) = h.fetch();
    assert_eq!(url, VOICE);
    for (name, value) in [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", "+15550001"),
        ("To", "+15550100"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
    ] {
        assert_eq!(params.get(name), Some(value), "{name}");
    }
    assert_eq!(h.call.status(), CallStatus::Ringing);
}

#[test]
fn say_answers_plays_and_hangs_up_when_the_document_ends() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(10, "<Response><Say voice=\"alice\">Hello</Say></Response>");
    assert_eq!(actions[0], Action::Answer);
    assert!(matches!(
        &actions[1],
        Action::Play { audio: Audio::Say { text, voice, .. }, loops, .. }
            if text == "Hello" && voice == "alice" && *loops == Loop::ONCE
    ));
    assert_eq!(h.call.status(), CallStatus::InProgress);
    let id = prompt_id(&actions);
    h.call.handle_prompt_finished(h.at(2000), id, None);
    assert_eq!(
        h.actions(),
        [Action::HangUp, Action::Ended(CallStatus::Completed)]
    );
    let (_, answered, ended) = h.call.times();
    assert_eq!(answered, Some(h.at(10)));
    assert_eq!(ended, Some(h.at(2000)));
}

#[test]
fn reject_refuses_without_answering() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(5, "<Response><Reject reason=\"busy\"/></Response>");
    assert_eq!(
        actions,
        [
            Action::Refuse {
                status: 486,
                reason: "Busy Here"
            },
            Action::Ended(CallStatus::Busy)
        ]
    );
    let mut h = Harness::new(webhook(false));
    let actions = h.document(5, "<Response><Reject/></Response>");
    assert!(matches!(actions[0], Action::Refuse { status: 603, .. }));
}

#[test]
fn relative_urls_resolve_against_the_document() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Play loop=\"2\">/audio/hi.wav</Play></Response>",
    );
    assert!(actions.iter().any(|a| matches!(a,
        Action::Play { audio: Audio::Url(url), loops, .. }
            if url == "http://app.test/audio/hi.wav" && loops.count() == 2)));
}

#[test]
fn pause_waits_on_the_clock() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(0, "<Response><Pause length=\"2\"/><Hangup/></Response>");
    assert_eq!(actions, [Action::Answer]);
    assert_eq!(h.call.poll_timeout(), Some(h.at(2000)));
    h.call.handle_timeout(h.at(1999));
    assert!(h.actions().is_empty());
    h.call.handle_timeout(h.at(2000));
    assert_eq!(
        h.actions(),
        [Action::HangUp, Action::Ended(CallStatus::Completed)]
    );
}

#[test]
fn dial_client_answer_on_bridge_first_answer_wins_then_continues() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial answerOnBridge=\"true\" timeout=\"20\"><Client>alice</Client></Dial>\
         <Say>after</Say></Response>",
    );
    // Not answered yet; no ringback to an unanswered caller.
    assert!(!actions.contains(&Action::Answer), "{actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, Action::Play { .. })));
    let dial = dial_id(&actions);
    assert!(
        matches!(&actions[0], Action::Dial { targets, caller_id, .. }
        if targets == &[twiml::Target::Client(twiml::Client::new("alice"))] && caller_id == "+15550001")
    );
    h.call
        .handle_dial_started(h.at(1), dial, started(&[leg(1), leg(2)]));
    h.call
        .handle_leg(h.at(100), dial, &leg(1), LegEvent::Ringing);
    assert_eq!(h.actions(), [Action::Ring]);
    h.call
        .handle_leg(h.at(150), dial, &leg(2), LegEvent::Ringing);
    assert!(h.actions().is_empty(), "180 is relayed once");
    h.call
        .handle_leg(h.at(3000), dial, &leg(2), LegEvent::Answered);
    assert_eq!(
        h.actions(),
        [
            Action::Answer,
            Action::Bridge(leg(2)),
            Action::CancelLeg(leg(1))
        ]
    );
    // A late answer from the cancelled device is hung up.
    h.call
        .handle_leg(h.at(3001), dial, &leg(1), LegEvent::Answered);
    assert_eq!(h.actions(), [Action::HangUpLeg(leg(1))]);
    assert_eq!(
        h.call.poll_timeout(),
        Some(h.at(3000) + Duration::from_secs(14_400))
    );
    // The client hangs up: the dial is complete and the next verb runs.
    h.call
        .handle_leg(h.at(8000), dial, &leg(2), LegEvent::Ended);
    let actions = h.actions();
    assert_eq!(actions[0], Action::StopPlay);
    assert!(
        matches!(&actions[1], Action::Play { audio: Audio::Say { text, .. }, .. } if text == "after")
    );
}

#[test]
fn dial_timeout_cancels_every_leg_and_reports_no_answer_to_the_action() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial action=\"/dialed\" timeout=\"5\"><Client>alice</Client></Dial></Response>",
    );
    assert_eq!(actions[0], Action::Answer, "answered: no answerOnBridge");
    assert!(actions.contains(&Action::Play {
        id: prompt_id(&actions),
        audio: Audio::Ringback,
        loops: Loop::FOREVER
    }));
    let dial = dial_id(&actions);
    h.call
        .handle_dial_started(h.at(0), dial, started(&[leg(1), leg(2)]));
    h.call
        .handle_leg(h.at(10), dial, &leg(1), LegEvent::Ringing);
    assert!(h.actions().is_empty(), "an answered caller gets no 180");
    assert_eq!(h.call.poll_timeout(), Some(h.at(5000)));
    h.call.handle_timeout(h.at(5000));
    let actions = h.actions();
    assert_eq!(
        &actions[..3],
        [
            Action::CancelLeg(leg(1)),
            Action::CancelLeg(leg(2)),
            Action::StopPlay
        ]
    );
    let Action::Fetch { url, params, .. } = &actions[3] else {
        panic!("{actions:?}")
    };
    assert_eq!(url, "http://app.test/dialed");
    assert_eq!(params.get("DialCallStatus"), Some("no-answer"));
    assert_eq!(params.get("DialCallSid"), None);
    assert_eq!(params.get("CallStatus"), Some("in-progress"));
}

#[test]
fn an_offline_identity_ends_the_dial_at_once() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial answerOnBridge=\"true\"><Client>bob</Client></Dial><Say>gone</Say></Response>",
    );
    let dial = dial_id(&actions);
    h.call.handle_dial_started(h.at(2), dial, started(&[]));
    let actions = h.actions();
    assert_eq!(actions[0], Action::Answer, "Say answers the caller");
    assert!(matches!(&actions[1], Action::Play { .. }));
}

#[test]
fn every_device_rejecting_is_busy() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial action=\"/dialed\" answerOnBridge=\"true\"><Client>alice</Client></Dial></Response>",
    );
    let dial = dial_id(&actions);
    h.call
        .handle_dial_started(h.at(0), dial, started(&[leg(1), leg(2)]));
    h.call.handle_leg(
        h.at(10),
        dial,
        &leg(1),
        LegEvent::Failed(LegFailure::Rejected),
    );
    assert!(h.actions().is_empty());
    h.call.handle_leg(
        h.at(20),
        dial,
        &leg(2),
        LegEvent::Failed(LegFailure::Failed),
    );
    let (_, _, params) = h.fetch();
    assert_eq!(params.get("DialCallStatus"), Some("busy"));
    // Unanswered still: the action's instructions may reject.
    assert_eq!(params.get("CallStatus"), Some("ringing"));
}

#[test]
fn sip_failures_map_to_twilios_statuses() {
    for (failure, expected) in [
        (LegFailure::Busy, "busy"),
        (LegFailure::NoAnswer, "no-answer"),
        (LegFailure::Failed, "failed"),
    ] {
        let mut h = Harness::new(webhook(false));
        let actions = h.document(
            0,
            "<Response><Dial action=\"/d\"><Sip>sip:bob@example.com</Sip></Dial></Response>",
        );
        let dial = dial_id(&actions);
        h.call
            .handle_dial_started(h.at(0), dial, started(&[leg(1)]));
        h.call
            .handle_leg(h.at(1), dial, &leg(1), LegEvent::Failed(failure));
        let (_, _, params) = h.fetch();
        assert_eq!(params.get("DialCallStatus"), Some(expected));
        assert_eq!(params.get("DialCallSid"), Some(leg(1).as_str()));
        assert_eq!(params.get("DialCallDuration"), Some("0"));
    }
}

#[test]
fn caller_cancel_while_ringing_cancels_every_leg() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial answerOnBridge=\"true\"><Client>alice</Client></Dial></Response>",
    );
    let dial = dial_id(&actions);
    h.call
        .handle_dial_started(h.at(0), dial, started(&[leg(1), leg(2)]));
    h.call.handle_caller(h.at(500), CallerEvent::Cancelled);
    assert_eq!(
        h.actions(),
        [
            Action::CancelLeg(leg(1)),
            Action::CancelLeg(leg(2)),
            Action::Ended(CallStatus::Canceled)
        ]
    );
    // Nothing after the end.
    h.call
        .handle_leg(h.at(600), dial, &leg(1), LegEvent::Answered);
    assert_eq!(h.actions(), [Action::HangUpLeg(leg(1))]);
}

#[test]
fn caller_bye_during_the_bridge_hangs_up_the_leg() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial><Sip>sip:bob@example.com</Sip></Dial></Response>",
    );
    let dial = dial_id(&actions);
    h.call
        .handle_dial_started(h.at(0), dial, started(&[leg(7)]));
    h.call
        .handle_leg(h.at(10), dial, &leg(7), LegEvent::Answered);
    assert_eq!(h.actions(), [Action::StopPlay, Action::Bridge(leg(7))]);
    h.call.handle_caller(h.at(900), CallerEvent::Bye);
    assert_eq!(
        h.actions(),
        [
            Action::HangUpLeg(leg(7)),
            Action::Ended(CallStatus::Completed)
        ]
    );
}

#[test]
fn time_limit_ends_the_bridge() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial timeLimit=\"10\" action=\"/d\"><Sip>sip:b@x</Sip></Dial></Response>",
    );
    let dial = dial_id(&actions);
    h.call
        .handle_dial_started(h.at(0), dial, started(&[leg(1)]));
    h.call
        .handle_leg(h.at(1000), dial, &leg(1), LegEvent::Answered);
    h.actions();
    assert_eq!(h.call.poll_timeout(), Some(h.at(11_000)));
    h.call.handle_timeout(h.at(11_000));
    let actions = h.actions();
    assert_eq!(actions[0], Action::HangUpLeg(leg(1)));
    let Some(Action::Fetch { params, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    assert_eq!(params.get("DialCallStatus"), Some("completed"));
    assert_eq!(params.get("DialCallSid"), Some(leg(1).as_str()));
    assert_eq!(params.get("DialCallDuration"), Some("10"));
}

#[test]
fn gather_barge_in_num_digits_and_action() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Gather numDigits=\"3\" action=\"/digits\"><Say>Enter</Say><Play>/more.wav</Play></Gather></Response>",
    );
    let first = prompt_id(&actions);
    h.call.handle_digit(h.at(500), '1');
    assert_eq!(
        h.actions(),
        [Action::StopPlay],
        "the first digit stops the prompt"
    );
    // The stopped prompt's completion does not start the next one (barge-in skips them).
    h.call.handle_prompt_finished(h.at(510), first, None);
    assert!(h.actions().is_empty());
    assert_eq!(h.call.poll_timeout(), Some(h.at(5500)));
    h.call.handle_digit(h.at(600), '2');
    h.call.handle_digit(h.at(700), '3');
    let actions = h.actions();
    let Some(Action::Fetch { url, params, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    assert_eq!(url, "http://app.test/digits");
    assert_eq!(params.get("Digits"), Some("123"));
}

#[test]
fn gather_finish_on_key_and_timeouts() {
    // finishOnKey ends it; the key is not part of Digits.
    let mut h = Harness::new(webhook(false));
    h.document(0, "<Response><Gather action=\"/g\"/></Response>");
    h.call.handle_digit(h.at(100), '4');
    h.call.handle_digit(h.at(200), '2');
    h.call.handle_digit(h.at(300), '#');
    let (_, _, params) = h.fetch();
    assert_eq!(params.get("Digits"), Some("42"));

    // A timeout with digits submits them.
    let mut h = Harness::new(webhook(false));
    h.document(
        0,
        "<Response><Gather action=\"/g\" timeout=\"3\"/></Response>",
    );
    assert_eq!(h.call.poll_timeout(), Some(h.at(3000)));
    h.call.handle_digit(h.at(1000), '9');
    assert_eq!(
        h.call.poll_timeout(),
        Some(h.at(4000)),
        "restarts after a digit"
    );
    h.call.handle_timeout(h.at(4000));
    let (_, _, params) = h.fetch();
    assert_eq!(params.get("Digits"), Some("9"));

    // A timeout without digits falls through to the next verb.
    let mut h = Harness::new(webhook(false));
    h.document(
        0,
        "<Response><Gather action=\"/g\" timeout=\"1\"/><Hangup/></Response>",
    );
    h.call.handle_timeout(h.at(1000));
    assert_eq!(
        h.actions(),
        [
            Action::StopPlay,
            Action::HangUp,
            Action::Ended(CallStatus::Completed)
        ]
    );
}

#[test]
fn gather_plays_prompts_and_pauses_in_order() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Gather timeout=\"2\"><Say>one</Say><Pause length=\"1\"/><Say>two</Say></Gather></Response>",
    );
    let first = prompt_id(&actions);
    h.call.handle_prompt_finished(h.at(1000), first, None);
    assert!(h.actions().is_empty());
    assert_eq!(h.call.poll_timeout(), Some(h.at(2000)));
    h.call.handle_timeout(h.at(2000));
    let actions = h.actions();
    assert!(
        matches!(&actions[0], Action::Play { audio: Audio::Say { text, .. }, .. } if text == "two")
    );
    h.call
        .handle_prompt_finished(h.at(3000), prompt_id(&actions), None);
    assert_eq!(h.call.poll_timeout(), Some(h.at(5000)));
}

#[test]
fn digits_outside_a_gather_are_ignored() {
    let mut h = Harness::new(webhook(false));
    h.document(0, "<Response><Pause length=\"5\"/></Response>");
    h.call.handle_digit(h.at(10), '5');
    assert!(h.actions().is_empty());
}

#[test]
fn an_unreachable_webhook_uses_the_fallback_once_then_fails() {
    let mut h = Harness::new(webhook(true));
    let (id, _, _) = h.fetch();
    h.call.handle_document(
        h.at(100),
        id,
        Err(FetchFailure {
            code: 11205,
            message: "connection refused".into(),
        }),
    );
    let (id, url, params) = h.fetch();
    assert_eq!(url, "http://app.test/fallback");
    assert_eq!(params.get("ErrorCode"), Some("11205"));
    assert_eq!(params.get("ErrorUrl"), Some(VOICE));
    h.call.handle_document(
        h.at(200),
        id,
        Err(FetchFailure {
            code: 11200,
            message: "HTTP 500".into(),
        }),
    );
    assert_eq!(
        h.actions(),
        [
            Action::Refuse {
                status: 500,
                reason: "Application Error"
            },
            Action::Ended(CallStatus::Failed)
        ]
    );
}

#[test]
fn garbage_instructions_use_the_fallback_with_the_parse_error_code() {
    let mut h = Harness::new(webhook(true));
    let actions = h.document(0, "<html><body>oops</body></html>");
    let Some(Action::Fetch { params, url, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    assert_eq!(url, "http://app.test/fallback");
    assert!(
        ["12100", "12200"].contains(&params.get("ErrorCode").unwrap()),
        "{params:?}"
    );
    // Without a fallback the caller gets 500.
    let mut h = Harness::new(webhook(false));
    let actions = h.document(0, "<Response><Bogus/></Response>");
    assert!(matches!(actions[0], Action::Refuse { status: 500, .. }));
}

#[test]
fn an_answered_call_with_failing_instructions_is_hung_up() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Say>hi</Say><Redirect>/next</Redirect></Response>",
    );
    let playing = prompt_id(&actions);
    h.call.handle_prompt_finished(h.at(10), playing, None);
    let (id, url, _) = h.fetch();
    assert_eq!(url, "http://app.test/next");
    h.call.handle_document(
        h.at(20),
        id,
        Ok(Document {
            body: "not xml".into(),
            url,
        }),
    );
    assert_eq!(
        h.actions(),
        [Action::HangUp, Action::Ended(CallStatus::Failed)]
    );
}

#[test]
fn redirect_chains_are_bounded() {
    let mut h = Harness::new(webhook(false));
    let mut fetched = 0;
    loop {
        let actions = h.actions();
        let Some(Action::Fetch { id, url, .. }) = actions
            .iter()
            .find(|a| matches!(a, Action::Fetch { .. }))
            .cloned()
        else {
            assert_eq!(
                actions,
                [
                    Action::Refuse {
                        status: 500,
                        reason: "Application Error"
                    },
                    Action::Ended(CallStatus::Failed)
                ]
            );
            break;
        };
        fetched += 1;
        assert!(fetched < 50, "redirect loop not bounded");
        h.call.handle_document(
            h.at(fetched),
            id,
            Ok(Document {
                body: "<Response><Redirect>/again</Redirect></Response>".into(),
                url,
            }),
        );
    }
    assert_eq!(fetched, 1 + MAX_REDIRECTS as u64);
}

#[test]
fn stale_results_are_ignored() {
    let mut h = Harness::new(webhook(false));
    let (id, url, _) = h.fetch();
    h.call.handle_document(
        h.at(1),
        FetchId(id.0 + 100),
        Ok(Document {
            body: "<Response><Hangup/></Response>".into(),
            url: url.clone(),
        }),
    );
    assert!(h.actions().is_empty());
    assert_eq!(h.call.status(), CallStatus::Ringing);
    h.call
        .handle_prompt_finished(h.at(2), PromptId(999), Some("x".into()));
    assert!(h.actions().is_empty());
}

#[test]
fn status_callbacks_are_numbered_and_complete_with_the_duration() {
    let now = Instant::now();
    let mut call = Call::new(now, info(webhook(false), true));
    let mut actions: Vec<Action> = std::iter::from_fn(|| call.poll_action()).collect();
    let Some(Action::Fetch { id, url, .. }) = actions.pop() else {
        panic!()
    };
    call.handle_document(
        now + Duration::from_secs(1),
        id,
        Ok(Document {
            body: "<Response><Pause length=\"3\"/></Response>".into(),
            url,
        }),
    );
    call.handle_timeout(now + Duration::from_secs(4));
    actions.extend(std::iter::from_fn(|| call.poll_action()));
    let callbacks: Vec<&Params> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StatusCallback { url, params, .. } => {
                assert_eq!(url, "http://app.test/status");
                Some(params)
            }
            _ => None,
        })
        .collect();
    let events: Vec<_> = callbacks
        .iter()
        .map(|p| {
            (
                p.get("StatusCallbackEvent").unwrap(),
                p.get("SequenceNumber").unwrap(),
                p.get("CallStatus").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("initiated", "0", "ringing"),
            ("ringing", "1", "ringing"),
            ("answered", "2", "in-progress"),
            ("completed", "3", "completed"),
        ]
    );
    assert_eq!(callbacks[3].get("CallDuration"), Some("3"));
}

#[test]
fn the_demo_document_starts_without_a_fetch() {
    let verbs = twiml::parse(b"<Response><Play>welcome</Play></Response>")
        .unwrap()
        .verbs;
    let mut h = Harness::new(Start::Document {
        verbs,
        base: "tandem://demo/".into(),
    });
    let actions = h.actions();
    assert_eq!(actions[0], Action::Answer);
    assert!(
        matches!(&actions[1], Action::Play { audio: Audio::Url(url), .. } if url == "tandem://demo/welcome")
    );
}

#[test]
fn an_internal_error_fails_the_call_cleanly() {
    let mut h = Harness::new(webhook(false));
    h.fetch();
    h.call.handle_internal_error(h.at(0), "no RTP port");
    let actions = h.actions();
    assert_eq!(
        actions,
        [
            Action::Refuse {
                status: 500,
                reason: "Server Internal Error"
            },
            Action::Ended(CallStatus::Failed)
        ]
    );
    h.call.handle_caller(h.at(1), CallerEvent::Bye);
    assert!(h.actions().is_empty(), "the end is reported once");
}

#[test]
fn nouns_report_each_legs_progress_to_their_own_status_callback() {
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial callerId=\"+15550999\">\
         <Client statusCallback=\"/legs\" statusCallbackEvent=\"initiated ringing answered completed\">alice</Client>\
         <Sip statusCallback=\"http://app.test/sip\" statusCallbackMethod=\"GET\">sip:bob@example.com</Sip>\
         <Number>+15550123</Number></Dial></Response>",
    );
    let dial = dial_id(&actions);
    assert!(leg_callbacks(&actions).is_empty());
    let legs = [(1, 0), (2, 0), (3, 1), (4, 2)].map(|(n, noun)| StartedLeg { sid: leg(n), noun });
    h.call.handle_dial_started(h.at(1), dial, legs.to_vec());
    let actions = h.actions();
    let alice = "http://app.test/legs".to_owned();
    let sip = "http://app.test/sip".to_owned();
    let s = |n: u8| leg(n).as_str().to_owned();
    let row =
        |url: &String, method, n, event: &str, seq: &str, status: &str, duration: Option<&str>| {
            (
                url.clone(),
                method,
                s(n),
                event.to_owned(),
                seq.to_owned(),
                status.to_owned(),
                duration.map(str::to_owned),
            )
        };
    let post = WebhookMethod::Post;
    assert_eq!(
        leg_callbacks(&actions),
        [
            row(&alice, post, 1, "initiated", "0", "initiated", None),
            row(&alice, post, 2, "initiated", "0", "initiated", None),
        ],
        "the SIP noun only asked for completed, the number for nothing"
    );
    let Action::StatusCallback { params, .. } = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        params.get("From"),
        Some("+15550999"),
        "the dial's caller ID"
    );
    assert_eq!(params.get("To"), Some("client:alice"));
    h.call
        .handle_leg(h.at(100), dial, &leg(1), LegEvent::Ringing);
    h.call
        .handle_leg(h.at(150), dial, &leg(1), LegEvent::Ringing);
    assert_eq!(
        leg_callbacks(&h.actions()),
        [row(&alice, post, 1, "ringing", "1", "ringing", None)],
        "ringing is reported once per leg"
    );
    h.call
        .handle_leg(h.at(3000), dial, &leg(2), LegEvent::Answered);
    let actions = h.actions();
    assert!(actions.contains(&Action::Bridge(leg(2))));
    assert_eq!(
        leg_callbacks(&actions),
        [
            row(&alice, post, 2, "answered", "1", "in-progress", None),
            row(&alice, post, 1, "completed", "2", "canceled", Some("0")),
            row(
                &sip,
                WebhookMethod::Get,
                3,
                "completed",
                "0",
                "canceled",
                Some("0")
            ),
        ]
    );
    // The cancelled device reports its 487: it was already reported over.
    h.call.handle_leg(
        h.at(3010),
        dial,
        &leg(1),
        LegEvent::Failed(LegFailure::Failed),
    );
    assert!(leg_callbacks(&h.actions()).is_empty());
    h.call
        .handle_leg(h.at(8000), dial, &leg(2), LegEvent::Ended);
    assert_eq!(
        leg_callbacks(&h.actions()),
        [row(
            &alice,
            post,
            2,
            "completed",
            "2",
            "completed",
            Some("5")
        )]
    );
}

#[test]
fn leg_callbacks_say_how_each_leg_ended() {
    // A refused leg is busy, and the caller's BYE completes the bridged leg.
    let mut h = Harness::new(webhook(false));
    let actions = h.document(
        0,
        "<Response><Dial><Sip statusCallback=\"http://app.test/s\">sip:a@x</Sip>\
         <Sip statusCallback=\"http://app.test/s\">sip:b@x</Sip></Dial></Response>",
    );
    let dial = dial_id(&actions);
    let legs = [(1, 0), (2, 1)].map(|(n, noun)| StartedLeg { sid: leg(n), noun });
    h.call.handle_dial_started(h.at(0), dial, legs.to_vec());
    h.call
        .handle_leg(h.at(5), dial, &leg(1), LegEvent::Failed(LegFailure::Busy));
    h.call
        .handle_leg(h.at(1000), dial, &leg(2), LegEvent::Answered);
    h.call.handle_caller(h.at(4500), CallerEvent::Bye);
    let ended: Vec<_> = leg_callbacks(&h.actions())
        .into_iter()
        .map(|(_, _, sid, event, _, status, duration)| (sid, event, status, duration))
        .collect();
    assert_eq!(
        ended,
        [
            (
                leg(1).as_str().to_owned(),
                "completed".to_owned(),
                "busy".to_owned(),
                Some("0".to_owned())
            ),
            (
                leg(2).as_str().to_owned(),
                "completed".to_owned(),
                "completed".to_owned(),
                Some("3".to_owned())
            ),
        ]
    );
}
